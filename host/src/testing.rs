//! What the tests and benchmarks share of the servers they need: the test
//! PostgreSQL (`LEADGATE_TEST_POSTGRES`, default
//! `postgres://root@127.0.0.1:5432/test`), a schema of its own for each
//! store a test or a benchmark opens. Where the server cannot be reached
//! the error names the URL and the variable: a test fails saying so, never
//! passes without it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The test PostgreSQL's URL.
pub fn postgres_url() -> String {
    std::env::var("LEADGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// A pool of at most `max` connections to the test PostgreSQL.
pub async fn postgres(max: u32) -> Result<sqlx::PgPool, String> {
    let url = postgres_url();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .map_err(|e| {
            format!(
                "PostgreSQL is not reachable at {url} ({e}): this needs it (start it, or set \
                 LEADGATE_TEST_POSTGRES to another server)"
            )
        })
}

/// A schema of its own on the test PostgreSQL: `<prefix>_<pid>_<n>`.
pub struct TestSchema {
    pub pool: sqlx::PgPool,
    pub name: String,
}

impl TestSchema {
    /// Creates the next schema of this process; the first of a prefix
    /// drops the schemas of processes that are gone (a run that failed or
    /// was killed before it dropped its own).
    pub async fn create(prefix: &str) -> Result<TestSchema, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        static SWEPT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
        let pool = postgres(2).await?;
        let first = SWEPT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(prefix.to_string());
        if first {
            let pattern = format!("{prefix}\\_%");
            let schemas: Vec<String> =
                sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1")
                    .bind(pattern)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
            for schema in schemas {
                let pid = schema[prefix.len()..].split('_').nth(1).unwrap_or("");
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                }
            }
        }
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .map_err(|e| format!("creating schema {name}: {e}"))?;
        Ok(TestSchema { pool, name })
    }

    /// The store URL that selects this schema, from `server` (the test
    /// server's URL as the host reaches it).
    pub fn store_url(&self, server: &str) -> String {
        let sep = if server.contains('?') { '&' } else { '?' };
        format!("{server}{sep}options=-c%20search_path%3D{}", self.name)
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(self) {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&self.pool)
            .await;
    }
}

/// `n` written in letters (`a`, `b`, … `ba`, …): names of their own for
/// generated persons (names hold no digits).
pub fn letters(mut n: usize) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}
