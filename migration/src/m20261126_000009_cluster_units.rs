//! The replicas of a cluster (ADR 0012): one row per node that has opened a lease
//! connection, with the roles it runs and when it started. Whether a node is alive and
//! which units it holds are not stored: PostgreSQL knows them (its lease connection in
//! `pg_stat_activity`, its advisory locks in `pg_locks`), and a stored copy could only
//! be stale. The row says what `pg_stat_activity` cannot: the node's roles, and when it
//! started once it is gone. `cluster_claims` says since when a node holds a unit; it is
//! shown only while `pg_locks` agrees that the node holds it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterNodes::Table)
                    // The node id, as in its lease connection's application_name.
                    .col(
                        ColumnDef::new(ClusterNodes::NodeId)
                            .string_len(48)
                            .not_null()
                            .primary_key(),
                    )
                    // Its roles, `api,projector,saga`: which units it may claim, so that each
                    // kind of unit is balanced among the nodes that run it.
                    .col(
                        ColumnDef::new(ClusterNodes::Roles)
                            .string_len(64)
                            .not_null(),
                    )
                    // When its current lease connection was opened.
                    .col(
                        ColumnDef::new(ClusterNodes::Since)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // How far it serves, as it last reported (every second, on its lease
                    // connection): the position its views have all reached as it knows
                    // them, how many events of the log its most behind view still wants,
                    // and when it said so. Nobody else can know it.
                    .col(ColumnDef::new(ClusterNodes::Position).big_integer().null())
                    .col(ColumnDef::new(ClusterNodes::Lag).big_integer().null())
                    .col(
                        ColumnDef::new(ClusterNodes::ReportedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClusterClaims::Table)
                    // The unit's name (`projector:catalog`, `saga:3`): its latest claim.
                    .col(
                        ColumnDef::new(ClusterClaims::Unit)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    // Its advisory lock key as `pg_locks.objid` shows it, to match the lock.
                    .col(
                        ColumnDef::new(ClusterClaims::Objid)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClusterClaims::NodeId)
                            .string_len(48)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClusterClaims::Since)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ClusterClaims::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClusterNodes::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ClusterNodes {
    Table,
    NodeId,
    Roles,
    Since,
    Position,
    Lag,
    ReportedAt,
}

#[derive(DeriveIden)]
enum ClusterClaims {
    Table,
    Unit,
    Objid,
    NodeId,
    Since,
}
