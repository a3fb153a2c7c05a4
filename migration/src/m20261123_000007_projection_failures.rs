//! A projection that stops at an event it cannot fold records where and why beside its
//! checkpoint, so `ordergraph projections status` shows it from outside the server. The
//! next successful fold clears it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProjectionCheckpoints::Table)
                    .add_column(
                        ColumnDef::new(ProjectionCheckpoints::FailedPosition)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ProjectionCheckpoints::Table)
                    .add_column(ColumnDef::new(ProjectionCheckpoints::Error).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ProjectionCheckpoints::Error,
            ProjectionCheckpoints::FailedPosition,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ProjectionCheckpoints::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ProjectionCheckpoints {
    Table,
    FailedPosition,
    Error,
}
