//! What the SQL stores share beyond the statements: their defaults, and
//! their [`SessionStore`](session_core::SessionStore) impl, which is the
//! [`SessionTable`](crate::SessionTable) on the store's pool.

/// The table a SQL store uses unless told otherwise.
pub const DEFAULT_TABLE_NAME: &str = "axum_sessions";

/// Rows deleted per statement by
/// [`SessionStore::delete_expired`](session_core::SessionStore::delete_expired)
/// unless the store is told otherwise.
pub const DEFAULT_CLEANUP_BATCH_SIZE: u32 = 1000;

/// Implements [`SessionStore`](session_core::SessionStore) for a SQL store
/// type whose every operation is its [`SessionTable`](crate::SessionTable)'s
/// on its pool. The type provides `fn sessions(&self) -> &SessionTable<_>`
/// and `fn pool(&self) -> &Pool<_>`.
///
/// A macro because the trait is core's and the store type the driver
/// crate's: no blanket impl here may cover it.
///
/// ```
/// # use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
/// # struct Sqlite;
/// # impl Driver for Sqlite {
/// #     type Database = sqlx::Sqlite;
/// #     const STORE: &'static str = "sqlite";
/// #     const PARAMETERS: Parameters = Parameters::Numbered("?");
/// #     const INSERT: Insert = Insert::OnConflictDoNothing;
/// #     const CLEANUP: Cleanup = Cleanup::Subquery { lock: "" };
/// #     const VALUE_TYPES: ValueTypes = ValueTypes::PerValue;
/// #     const USER_IDS: UserIds = UserIds::Text;
/// #     fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 { done.rows_affected() }
/// #     fn backend(error: sqlx::Error) -> session_core::Error {
/// #         session_core::Error::backend(Self::STORE, error)
/// #     }
/// # }
/// use session_stores_sql::SessionTable;
///
/// #[derive(Debug)]
/// struct MyStore {
///     pool: sqlx::SqlitePool,
///     sessions: SessionTable<Sqlite>,
/// }
///
/// impl MyStore {
///     fn sessions(&self) -> &SessionTable<Sqlite> {
///         &self.sessions
///     }
///     fn pool(&self) -> &sqlx::SqlitePool {
///         &self.pool
///     }
/// }
///
/// session_stores_sql::impl_session_store!(MyStore);
/// ```
#[macro_export]
macro_rules! impl_session_store {
    ($store:ty) => {
        #[$crate::__core::async_trait]
        impl $crate::__core::SessionStore for $store {
            async fn create(
                &self,
                record: &$crate::__core::Record,
            ) -> Result<(), $crate::__core::Error> {
                self.sessions().create(self.pool(), record).await
            }

            async fn load(
                &self,
                key: &$crate::__core::StorageKey,
                now: $crate::__core::Timestamp,
            ) -> Result<Option<$crate::__core::Record>, $crate::__core::Error> {
                self.sessions().load(self.pool(), key, now).await
            }

            async fn save(
                &self,
                record: &$crate::__core::Record,
            ) -> Result<(), $crate::__core::Error> {
                self.sessions().save(self.pool(), record).await
            }

            async fn delete(
                &self,
                key: &$crate::__core::StorageKey,
            ) -> Result<(), $crate::__core::Error> {
                self.sessions().delete(self.pool(), key).await
            }

            async fn touch(
                &self,
                record: &$crate::__core::Record,
            ) -> Result<(), $crate::__core::Error> {
                self.sessions().touch(self.pool(), record).await
            }

            async fn delete_expired(
                &self,
                now: $crate::__core::Timestamp,
            ) -> Result<u64, $crate::__core::Error> {
                self.sessions().delete_expired(self.pool(), now).await
            }

            async fn list_for_user(
                &self,
                user: &str,
                now: $crate::__core::Timestamp,
            ) -> Result<Vec<$crate::__core::Record>, $crate::__core::Error> {
                self.sessions().list_for_user(self.pool(), user, now).await
            }

            async fn delete_for_user(&self, user: &str) -> Result<u64, $crate::__core::Error> {
                self.sessions().delete_for_user(self.pool(), user).await
            }
        }
    };
}
