//! A database of its own for one test, on the MariaDB that `ops/test` starts.

use mysql_async::prelude::*;

pub struct TestDb {
    pub name: String,
    server_url: String,
    pub pool: mysql_async::Pool,
}

impl TestDb {
    pub async fn create() -> Self {
        let server_url = std::env::var("MB_TEST_MYSQL_URL").unwrap_or_else(|_| {
            panic!(
                "MB_TEST_MYSQL_URL is not set. Run the end-to-end tests with ops/test, which starts a \
                 private MariaDB and sets it (mysql://user:password@127.0.0.1:port)."
            )
        });
        Self::create_on(&server_url).await
    }

    /// A database of its own on the server at `server_url` (no database in the URL).
    pub async fn create_on(server_url: &str) -> Self {
        let server_url = server_url.trim_end_matches('/').to_owned();
        let name = format!("mb_test_{:016x}", rand::random::<u64>());
        let admin = mysql_async::Pool::new(server_url.as_str());
        admin
            .get_conn()
            .await
            .expect("connect to MB_TEST_MYSQL_URL")
            .query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
            .await
            .expect("create test database");
        let _ = admin.disconnect().await;
        let pool = mysql_async::Pool::new(format!("{server_url}/{name}").as_str());
        Self {
            name,
            server_url,
            pool,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server_url, self.name)
    }

    pub async fn query<T: FromRow + Send + 'static>(&self, sql: &str) -> Vec<T> {
        self.pool
            .get_conn()
            .await
            .expect("db conn")
            .query(sql)
            .await
            .expect(sql)
    }

    pub async fn count(&self, sql: &str) -> u64 {
        self.query::<u64>(sql).await.first().copied().unwrap_or(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.server_url.clone();
        let name = self.name.clone();
        // Drop cannot await; a short-lived runtime on its own thread drops the database.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let pool = mysql_async::Pool::new(url.as_str());
                    if let Ok(mut c) = pool.get_conn().await {
                        let _ = c
                            .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                            .await;
                    }
                    let _ = pool.disconnect().await;
                });
            }
        })
        .join();
    }
}
