//! The scratch copy of a view: a schema of its own on PostgreSQL, a scratch database
//! file on SQLite; created with the live tables' shapes, dropped after use.

use super::*;

/// The scratch copy of a view.
pub(super) struct Scratch {
    pub(super) conn: DatabaseConnection,
    pub(super) place: Place,
}

pub(super) enum Place {
    Postgres { schema: String },
    Sqlite { path: PathBuf },
}

impl Scratch {
    pub(super) async fn create(
        live: &DatabaseConnection,
        url: &str,
        projection: &dyn Projection,
    ) -> Result<Self, DbErr> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let tag = &tag[..12];
        match live.get_database_backend() {
            DbBackend::Postgres => {
                let schema = format!("rebuild_{}_{tag}", projection.name());
                let current =
                    Statement::from_string(DbBackend::Postgres, "SELECT current_schema() AS s");
                let live_schema = crate::db::scalar::<String>(live, current, "s")
                    .await?
                    .unwrap_or_else(|| "public".to_owned());
                live.execute_unprepared(&format!("CREATE SCHEMA {}", quote(&schema)))
                    .await?;
                let made = async {
                    for table in projection.tables() {
                        let scratch_table = format!("{}.{}", quote(&schema), quote(table.name));
                        live.execute_unprepared(&format!(
                            // Unlogged: a scratch copy is thrown away on any failure.
                            "CREATE UNLOGGED TABLE {scratch_table} \
                             (LIKE {}.{} INCLUDING ALL EXCLUDING INDEXES)",
                            quote(&live_schema),
                            quote(table.name)
                        ))
                        .await?;
                        for index in fold_indexes(live, &live_schema, table.name).await? {
                            live.execute_unprepared(&retarget(&index, &scratch_table))
                                .await?;
                        }
                    }
                    let mut options = ConnectOptions::new(url.to_owned());
                    options
                        .max_connections(1)
                        .min_connections(1)
                        // No reaper: see `db::connect` (sqlx issue 3645).
                        .idle_timeout(None::<std::time::Duration>)
                        .max_lifetime(None::<std::time::Duration>)
                        .sqlx_logging(false)
                        .set_schema_search_path(quote(&schema));
                    Database::connect(options).await
                }
                .await;
                let place = Place::Postgres { schema };
                match made {
                    Ok(conn) => Ok(Self { conn, place }),
                    Err(e) => {
                        drop_place(live, &place).await;
                        Err(e)
                    }
                }
            }
            _ => {
                let path = std::env::temp_dir().join(format!(
                    "ordergraph-rebuild-{}-{tag}.sqlite",
                    projection.name()
                ));
                let names = projection
                    .tables()
                    .iter()
                    .map(|t| format!("'{}'", t.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                let ddl = live
                    .query_all_raw(Statement::from_string(
                        DbBackend::Sqlite,
                        format!(
                            // Not the triggers: they keep indexes of the live view
                            // (its search index) that the scratch copy has no use for.
                            "SELECT sql FROM sqlite_master WHERE tbl_name IN ({names}) \
                             AND sql IS NOT NULL AND type <> 'trigger' \
                             ORDER BY type = 'table' DESC, name"
                        ),
                    ))
                    .await?
                    .into_iter()
                    .map(|r| r.try_get::<String>("", "sql"))
                    .collect::<Result<Vec<_>, _>>()?;
                let place = Place::Sqlite { path };
                let made = async {
                    let Place::Sqlite { path } = &place else {
                        unreachable!("a SQLite place")
                    };
                    let mut options =
                        ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
                    options
                        .max_connections(1)
                        .min_connections(1)
                        // No reaper: see `db::connect` (sqlx issue 3645).
                        .idle_timeout(None::<std::time::Duration>)
                        .max_lifetime(None::<std::time::Duration>)
                        .sqlx_logging(false)
                        // A scratch copy: thrown away on any failure, so no journal.
                        .map_sqlx_sqlite_opts(|o| {
                            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Off)
                                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Off)
                        });
                    let conn = Database::connect(options).await?;
                    for statement in &ddl {
                        conn.execute_unprepared(statement).await?;
                    }
                    Ok::<_, DbErr>(conn)
                }
                .await;
                match made {
                    Ok(conn) => Ok(Self { conn, place }),
                    Err(e) => {
                        drop_place(live, &place).await;
                        Err(e)
                    }
                }
            }
        }
    }

    /// The scratch table as the live connection names it.
    pub(super) fn qualified(&self, table: &str) -> String {
        match &self.place {
            Place::Postgres { schema } => format!("{}.{}", quote(schema), quote(table)),
            Place::Sqlite { .. } => format!("shadow.{}", quote(table)),
        }
    }

    pub(super) async fn discard(self, live: &DatabaseConnection) {
        let _ = self.conn.close().await;
        drop_place(live, &self.place).await;
    }
}

/// The definitions of the live table's indexes a fold can use: its keys and b-tree
/// lookups, not its search indexes (GIN or GiST: trigram, full text), which a scratch copy
/// would keep up to date on every row it writes, for no reader (the swap copies rows into
/// the live table, whose own indexes take them).
async fn fold_indexes(
    live: &DatabaseConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, DbErr> {
    let rows = live
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_get_indexdef(i.indexrelid) AS def \
             FROM pg_index i \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = ic.relam \
             WHERE n.nspname = $1 AND t.relname = $2 AND am.amname NOT IN ('gin', 'gist') \
             ORDER BY ic.relname",
            [schema.into(), table.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|r| r.try_get::<String>("", "def"))
        .collect()
}

/// An index definition (`CREATE [UNIQUE] INDEX name ON schema.table USING …`, as
/// `pg_get_indexdef` writes it) made on `table` instead. An index lives in its table's
/// schema, so its name cannot collide with the live one's.
fn retarget(definition: &str, table: &str) -> String {
    match (definition.find(" ON "), definition.find(" USING ")) {
        (Some(on), Some(using)) if on < using => {
            format!("{} ON {table}{}", &definition[..on], &definition[using..])
        }
        // Not the shape pg_get_indexdef writes: left as it is, it would fail loudly.
        _ => definition.to_owned(),
    }
}

pub(super) async fn drop_place(live: &DatabaseConnection, place: &Place) {
    match place {
        Place::Postgres { schema } => {
            if let Err(e) = live
                .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema)))
                .await
            {
                tracing::warn!(%schema, error = %e, "could not drop a rebuild's scratch schema");
            }
        }
        Place::Sqlite { path } => {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a rebuild's scratch file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retarget;

    #[test]
    fn an_index_definition_is_moved_to_the_scratch_table() {
        assert_eq!(
            retarget(
                "CREATE UNIQUE INDEX catalog_view_pkey ON public.catalog_view USING btree (id)",
                "\"rebuild_catalog_1\".\"catalog_view\""
            ),
            "CREATE UNIQUE INDEX catalog_view_pkey ON \"rebuild_catalog_1\".\"catalog_view\" USING btree (id)"
        );
        assert_eq!(
            retarget(
                "CREATE INDEX cart_view_items_user ON public.cart_view_items USING btree (user_id, added_position)",
                "s.t"
            ),
            "CREATE INDEX cart_view_items_user ON s.t USING btree (user_id, added_position)"
        );
    }
}
