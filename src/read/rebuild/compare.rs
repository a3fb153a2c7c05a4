//! The live side of a rebuild or a verify: the live view with the scratch copy in reach,
//! to swap the scratch rows in (with the keys that changed) or to compare both copies
//! row by row.

use super::*;

/// The live database as a swap or a comparison sees it: with the scratch copy in reach.
/// On PostgreSQL the service's pool (the scratch schema is in the same database); on
/// SQLite one connection of its own with the scratch file attached as `shadow`.
pub(super) struct LiveSide {
    pub(super) conn: DatabaseConnection,
    pub(super) own: bool,
}

impl LiveSide {
    pub(super) async fn open(
        live: &DatabaseConnection,
        url: &str,
        scratch: &Scratch,
    ) -> Result<Self, DbErr> {
        match &scratch.place {
            Place::Postgres { .. } => Ok(Self {
                conn: live.clone(),
                own: false,
            }),
            Place::Sqlite { path } => {
                let conn = crate::db::connect(url, 1)
                    .await
                    .map_err(|e| DbErr::Custom(format!("{e:#}")))?;
                let path = path.display().to_string().replace('\'', "''");
                conn.execute_unprepared(&format!("ATTACH DATABASE '{path}' AS shadow"))
                    .await?;
                Ok(Self { conn, own: true })
            }
        }
    }

    pub(super) async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        begin_write(&self.conn).await
    }

    pub(super) async fn begin_read(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        self.conn.begin().await
    }

    pub(super) async fn close(self) {
        if self.own {
            let _ = self.conn.close().await;
        }
    }

    /// The live table's columns, quoted, in table order.
    pub(super) async fn columns<C: ConnectionTrait>(
        &self,
        txn: &C,
        table: &str,
    ) -> Result<Vec<String>, DbErr> {
        let backend = txn.get_database_backend();
        let statement = match backend {
            DbBackend::Postgres => Statement::from_sql_and_values(
                backend,
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
                [table.into()],
            ),
            _ => Statement::from_sql_and_values(
                backend,
                "SELECT name FROM pragma_table_info(?) ORDER BY cid",
                [table.into()],
            ),
        };
        let columns = txn
            .query_all_raw(statement)
            .await?
            .into_iter()
            .map(|r| r.try_get::<String>("", "name").map(|c| quote(&c)))
            .collect::<Result<Vec<_>, _>>()?;
        if columns.is_empty() {
            return Err(DbErr::Custom(format!(
                "the view table {table} does not exist"
            )));
        }
        Ok(columns)
    }

    /// Each row of `table` as JSON text, from the live side or the scratch side.
    pub(super) async fn row_json<C: ConnectionTrait>(
        &self,
        txn: &C,
        table: &str,
        from: &str,
    ) -> Result<String, DbErr> {
        Ok(match txn.get_database_backend() {
            // jsonb: equality exists for every column type, json included.
            DbBackend::Postgres => format!("SELECT to_jsonb(t) AS row FROM {from} t"),
            _ => {
                let mut pairs = String::new();
                for (i, column) in self.columns(txn, table).await?.iter().enumerate() {
                    if i > 0 {
                        pairs.push_str(", ");
                    }
                    let name = column.trim_matches('"');
                    // A 16-byte blob is a UUID: shown as one, like PostgreSQL does.
                    let hex = format!("hex({column})");
                    let _ = write!(
                        pairs,
                        "'{name}', CASE WHEN typeof({column}) = 'blob' AND length({column}) = 16 \
                         THEN lower(substr({hex}, 1, 8) || '-' || substr({hex}, 9, 4) || '-' || \
                         substr({hex}, 13, 4) || '-' || substr({hex}, 17, 4) || '-' || \
                         substr({hex}, 21, 12)) \
                         WHEN typeof({column}) = 'blob' THEN lower({hex}) ELSE {column} END"
                    );
                }
                format!("SELECT json_object({pairs}) AS row FROM {from}")
            }
        })
    }

    /// The rows of the live table and of its scratch copy that the other lacks, as two
    /// queries of a `row` column of JSON.
    pub(super) async fn differing<C: ConnectionTrait>(
        &self,
        txn: &C,
        scratch: &Scratch,
        table: &ViewTable,
    ) -> Result<(String, String), DbErr> {
        let live_rows = self.row_json(txn, table.name, &quote(table.name)).await?;
        let replayed_rows = self
            .row_json(txn, table.name, &scratch.qualified(table.name))
            .await?;
        Ok((
            format!("{live_rows} EXCEPT {replayed_rows}"),
            format!("{replayed_rows} EXCEPT {live_rows}"),
        ))
    }

    /// PostgreSQL: the select list of `table`'s own columns, `json` ones as `jsonb`
    /// (which has equality), for an `EXCEPT` that compares the values as they are instead
    /// of each row turned into `jsonb` first: the swap of a rebuild holds the view while
    /// it lists the changed keys, and at 124 000 orders `to_jsonb` of every row took 3.7 s
    /// of it. `None` when a column has a type not known to have equality (then the JSON
    /// rows of [`row_json`](Self::row_json) are compared).
    async fn value_columns<C: ConnectionTrait>(
        &self,
        txn: &C,
        table: &str,
    ) -> Result<Option<String>, DbErr> {
        const EQUALITY: &[&str] = &[
            "uuid",
            "text",
            "character varying",
            "character",
            "smallint",
            "integer",
            "bigint",
            "numeric",
            "boolean",
            "date",
            "timestamp with time zone",
            "timestamp without time zone",
            "jsonb",
            "bytea",
            "double precision",
            "real",
        ];
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT column_name::text AS name, data_type::text AS ty \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
                [table.into()],
            ))
            .await?;
        let mut list = Vec::with_capacity(rows.len());
        for row in rows {
            let name = quote(&row.try_get::<String>("", "name")?);
            let ty = row.try_get::<String>("", "ty")?;
            match ty.as_str() {
                "json" => list.push(format!("{name}::jsonb AS {name}")),
                ty if EQUALITY.contains(&ty) => list.push(name),
                _ => return Ok(None),
            }
        }
        if list.is_empty() {
            return Err(DbErr::Custom(format!(
                "the view table {table} does not exist"
            )));
        }
        Ok(Some(list.join(", ")))
    }

    /// The change keys ([`ChangeKey`]) of the rows that differ between the live table and
    /// its scratch copy; `None` when there are more than `limit`.
    pub(super) async fn changed_keys<C: ConnectionTrait>(
        &self,
        txn: &C,
        scratch: &Scratch,
        table: &ViewTable,
        limit: usize,
    ) -> Result<Option<BTreeSet<String>>, DbErr> {
        let backend = txn.get_database_backend();
        let values = match backend {
            DbBackend::Postgres => self.differing_values(txn, scratch, table).await?,
            _ => None,
        };
        let by_values = values.is_some();
        let (only_live, only_replayed) = match values {
            Some(differing) => differing,
            None => self.differing(txn, scratch, table).await?,
        };
        match table.change_key {
            ChangeKey::Whole(key) => {
                let sql = format!(
                    "SELECT 1 AS n FROM ({only_live}) a UNION ALL \
                     SELECT 1 AS n FROM ({only_replayed}) b LIMIT 1"
                );
                let any = txn
                    .query_one_raw(Statement::from_string(backend, sql))
                    .await?
                    .is_some();
                Ok(Some(if any {
                    BTreeSet::from([key.to_owned()])
                } else {
                    BTreeSet::new()
                }))
            }
            ChangeKey::Column(column) => {
                let pick = match backend {
                    _ if by_values => format!("{}::text", quote(column)),
                    DbBackend::Postgres => format!("row ->> '{column}'"),
                    _ => format!("json_extract(row, '$.{column}')"),
                };
                let sql = format!(
                    "SELECT DISTINCT k FROM (SELECT {pick} AS k FROM ({only_live}) a \
                     UNION ALL SELECT {pick} AS k FROM ({only_replayed}) b) u LIMIT {}",
                    limit + 1
                );
                let keys = txn
                    .query_all_raw(Statement::from_string(backend, sql))
                    .await?
                    .into_iter()
                    .map(|r| r.try_get::<String>("", "k"))
                    .collect::<Result<BTreeSet<_>, _>>()?;
                Ok((keys.len() <= limit).then_some(keys))
            }
        }
    }

    /// [`differing`](Self::differing) on PostgreSQL with the rows' own values
    /// ([`value_columns`](Self::value_columns), the same for both copies); `None` when
    /// they cannot be compared so.
    async fn differing_values<C: ConnectionTrait>(
        &self,
        txn: &C,
        scratch: &Scratch,
        table: &ViewTable,
    ) -> Result<Option<(String, String)>, DbErr> {
        let Some(columns) = self.value_columns(txn, table.name).await? else {
            return Ok(None);
        };
        let live = format!("SELECT {columns} FROM {} t", quote(table.name));
        let replayed = format!("SELECT {columns} FROM {} t", scratch.qualified(table.name));
        Ok(Some((
            format!("{live} EXCEPT {replayed}"),
            format!("{replayed} EXCEPT {live}"),
        )))
    }

    /// Compares the live table with its scratch copy.
    pub(super) async fn diff<C: ConnectionTrait>(
        &self,
        txn: &C,
        scratch: &Scratch,
        table: &ViewTable,
    ) -> Result<TableDiff, DbErr> {
        let backend = txn.get_database_backend();
        let (only_live, only_replayed) = self.differing(txn, scratch, table).await?;
        let rows_of = |sql: String| async move {
            txn.query_all_raw(Statement::from_string(backend, sql))
                .await?
                .into_iter()
                .map(|r| {
                    let text = match backend {
                        DbBackend::Postgres => r.try_get::<serde_json::Value>("", "row")?,
                        _ => {
                            let text = r.try_get::<String>("", "row")?;
                            serde_json::from_str(&text)
                                .map_err(|e| DbErr::Custom(format!("a row as JSON: {e}")))?
                        }
                    };
                    Ok::<_, DbErr>(text)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let scalar = |sql: String| async move {
            let count = Statement::from_string(backend, sql);
            let n = crate::db::scalar::<i64>(txn, count, "n").await?;
            Ok::<_, DbErr>(n.unwrap_or(0) as u64)
        };
        let rows = scalar(format!(
            "SELECT COUNT(*) AS n FROM {}",
            scratch.qualified(table.name)
        ))
        .await?;
        // A differing row is a key on either side of the difference (a changed row is on
        // both): count the keys.
        let postgres = backend == DbBackend::Postgres;
        let columns = table
            .key
            .iter()
            .map(|k| {
                if postgres {
                    format!("row -> '{k}'")
                } else {
                    format!("json_extract(row, '$.{k}')")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let array = if postgres {
            "jsonb_build_array"
        } else {
            "json_array"
        };
        let key_expr = format!("{array}({columns})");
        let count = scalar(format!(
            "SELECT COUNT(*) AS n FROM (SELECT {key_expr} AS k FROM ({only_live}) a \
             UNION SELECT {key_expr} AS k FROM ({only_replayed}) b) u"
        ))
        .await?;
        if count == 0 {
            return Ok(TableDiff {
                rows,
                count: 0,
                first: Vec::new(),
            });
        }
        // Enough of each side to pair up the first differing keys.
        let sample = REPORTED_DIFFERENCES * 20;
        let live_sample = rows_of(format!("{only_live} LIMIT {sample}")).await?;
        let replayed_sample = rows_of(format!("{only_replayed} LIMIT {sample}")).await?;
        let key_of = |row: &serde_json::Value| {
            serde_json::Value::Object(
                table
                    .key
                    .iter()
                    .map(|k| ((*k).to_owned(), row.get(*k).cloned().unwrap_or_default()))
                    .collect(),
            )
        };
        // Each sampled row beside the row of the same key on the other side, if sampled.
        let mut by_key: std::collections::BTreeMap<String, RowDifference> = Default::default();
        let sides = live_sample
            .into_iter()
            .map(|row| (true, row))
            .chain(replayed_sample.into_iter().map(|row| (false, row)));
        for (live, row) in sides {
            let key = key_of(&row);
            let difference = by_key
                .entry(key.to_string())
                .or_insert_with(|| RowDifference {
                    table: table.name,
                    key,
                    live: None,
                    replayed: None,
                });
            if live {
                difference.live = Some(row);
            } else {
                difference.replayed = Some(row);
            }
        }
        Ok(TableDiff {
            rows,
            count,
            first: by_key.into_values().take(REPORTED_DIFFERENCES).collect(),
        })
    }
}

pub(super) struct TableDiff {
    pub(super) rows: u64,
    pub(super) count: u64,
    pub(super) first: Vec<RowDifference>,
}
