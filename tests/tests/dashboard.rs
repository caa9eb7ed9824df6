//! The dashboard in a real headless browser (Debian's chromium, driven through chromedriver
//! with WebDriver): sign in, see a failed job, press Retry and see it succeed; press
//! "Run full sync" and watch its run reach 100%; press "Run import" and read each
//! collection's source / imported / rejected counts. Needs `chromium` and `chromium-driver`
//! (`scripts/services.sh browser` installs them). With `FERRY_DASHBOARD_SCREENSHOT=PATH` the
//! test saves a screenshot of the dashboard there (how `docs/dashboard.png` is made).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use ferry_queue::JobState;
use ferry_tests::{
    TestEnv,
    api::{ADMIN_TOKEN, API_CONFIG, ApiServer},
};
use serde_json::json;

/// chromedriver on a free port, killed when dropped.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: run `scripts/services.sh browser` (apt-get install chromium chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self(child, port)
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1200,1500"]}),
        );
        // Two rustls crypto providers are linked (aws-lc-rs and ring); pick one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        ClientBuilder::rustls()
            .expect("TLS setup")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.1))
            .await
            .expect("connect to chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CONFIG: &str = r#"
[sync]
schemas = ["{schema}"]
[sql.statements]
probe = "SELECT count(*) FROM {schema}.probe"
[[schedule]]
name = "nightly-probe"
cron = "0 30 2 * * *"
timezone = "Europe/Berlin"
kind = "sql"
args = { statement = "probe" }
"#;

async fn wait_for_css(
    browser: &Client,
    css: &str,
    timeout: Duration,
) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(timeout)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => {
            let page = browser.source().await.unwrap_or_default();
            panic!("{css} did not appear in {timeout:?}: {e}\n{page}")
        }
    }
}

/// Clicks the element `css` names. Panels are re-rendered every 2 s, which can replace an
/// element between finding and clicking it; then it is found again.
async fn click(browser: &Client, css: &str) {
    for _ in 0..20 {
        let element = wait_for_css(browser, css, Duration::from_secs(10)).await;
        match element.click().await {
            Ok(()) => return,
            Err(e) if is_stale(&e) => continue,
            Err(e) => panic!("click {css}: {e}"),
        }
    }
    panic!("{css} kept being replaced");
}

/// The text of the element `css` names, found again when a refresh replaced it.
async fn text(browser: &Client, css: &str) -> String {
    for _ in 0..20 {
        let element = wait_for_css(browser, css, Duration::from_secs(10)).await;
        match element.text().await {
            Ok(t) => return t,
            Err(e) if is_stale(&e) => continue,
            Err(e) => panic!("text of {css}: {e}"),
        }
    }
    panic!("{css} kept being replaced");
}

async fn sign_in(browser: &Client, server: &ApiServer) {
    browser.goto(&server.at("/dashboard")).await.unwrap();
    browser
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(ADMIN_TOKEN)
        .await
        .unwrap();
    click(browser, "#login").await;
}

fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    e.to_string().contains("stale element")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_retries_a_failed_job_and_runs_a_full_sync() {
    let env = TestEnv::new(&format!("{API_CONFIG}{CONFIG}")).await;
    env.load_school().await;
    let worker = env.start_worker();
    let server = ApiServer::start(env.config.clone()).await;

    // A job that fails for good: its table does not exist yet.
    let failed = env.enqueue("sql", r#"{"statement": "probe"}"#).await;
    env.wait_for(failed, Duration::from_secs(15), |j| {
        j.state == JobState::Dead
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.record.dead_job(failed).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the dead job was not archived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let driver = Driver::start();
    let browser = driver.browser().await;
    sign_in(&browser, &server).await;

    let row = format!("tr.failed[data-job='{failed}'][data-state='dead']");
    let shown = text(&browser, &row).await;
    assert!(
        shown.contains("probe") && shown.contains("does not exist"),
        "{shown}"
    );

    let schedule = text(
        &browser,
        "#panel-schedules tr[data-schedule='nightly-probe']",
    )
    .await;
    assert!(
        schedule.contains("active") && schedule.contains("sql"),
        "{schedule}"
    );

    env.sql("CREATE TABLE probe (id int PRIMARY KEY)").await;
    click(&browser, &format!("{row} button.retry")).await;
    wait_for_css(
        &browser,
        &format!("tr.retried[data-job='{failed}'][data-state='succeeded']"),
        Duration::from_secs(15),
    )
    .await;

    click(&browser, "#sync-full").await;
    let finished = "tr.run[data-kind='sync.full'][data-state='succeeded'] span.percent";
    wait_for_css(&browser, finished, Duration::from_secs(60)).await;
    let done = text(&browser, finished).await;
    assert_eq!(done, "100%");
    // The sync panel refreshes less often; it comes to show every table mirrored.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let same = browser
            .find_all(Locator::Css("#panel-sync tr.same"))
            .await
            .unwrap();
        let differs = browser
            .find_all(Locator::Css("#panel-sync tr.differs"))
            .await
            .unwrap();
        if differs.is_empty() && same.len() > 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} tables still differ",
            differs.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Pause the default queue from its row (the browser asks first), then resume it.
    click(&browser, "#panel-queues button[data-pause='default']").await;
    browser.accept_alert().await.unwrap();
    wait_for_css(
        &browser,
        "#panel-queues button[data-resume='default']",
        Duration::from_secs(10),
    )
    .await;
    assert!(env.queue.is_paused("default").await.unwrap());
    click(&browser, "#panel-queues button[data-resume='default']").await;
    wait_for_css(
        &browser,
        "#panel-queues button[data-pause='default']",
        Duration::from_secs(10),
    )
    .await;
    assert!(!env.queue.is_paused("default").await.unwrap());
    let audit = env.record.audit_log(20).await.unwrap();
    for action in ["queue.pause", "queue.resume"] {
        assert!(
            audit
                .iter()
                .any(|a| a.action == action && a.target.as_deref() == Some("default")),
            "{action} not audited"
        );
    }

    // One more failure for the picture: a dead job with its error and Retry button.
    let dead = env.enqueue("fail", r#"{"permanent": true}"#).await;
    wait_for_css(
        &browser,
        &format!("tr.failed[data-job='{dead}'] button.retry"),
        Duration::from_secs(15),
    )
    .await;
    if let Ok(path) = std::env::var("FERRY_DASHBOARD_SCREENSHOT") {
        std::fs::write(&path, browser.screenshot().await.unwrap()).unwrap();
    }
    browser.close().await.unwrap();
    worker.stop().await;
    server.stop().await;
    env.cleanup().await;
}

const IMPORT_CONFIG: &str = r#"
[import]
schema = "{schema}"
[[import.collection]]
name = "organizations"
table = "organizations"
[[import.collection]]
name = "teams"
table = "teams"
columns = { organization_id = { path = "org", ref = "organizations" } }
"#;

/// The cells of a collection's row in the import panel: source, imported, rejected.
async fn import_counts(browser: &Client, collection: &str) -> [String; 3] {
    let row = format!("#panel-import tr[data-collection='{collection}']");
    [
        text(browser, &format!("{row} td.source")).await,
        text(browser, &format!("{row} td.imported")).await,
        text(browser, &format!("{row} td.rejected")).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_panel_shows_source_imported_and_rejected_counts() {
    use bson::{Document, doc, oid::ObjectId};
    let env = TestEnv::new(&format!("{API_CONFIG}{IMPORT_CONFIG}")).await;
    env.sql(
        "CREATE TABLE organizations (id uuid PRIMARY KEY, name text NOT NULL);
         CREATE TABLE teams (id uuid PRIMARY KEY, name text NOT NULL,
                             organization_id uuid REFERENCES organizations (id))",
    )
    .await;
    // 5 organizations, one without its NOT NULL name; 3 teams, one in that organization
    // (rejected through its parent).
    let orgs: Vec<ObjectId> = (0..5).map(|_| ObjectId::new()).collect();
    let mongo = env.mongo().await;
    let mut docs: Vec<Document> = orgs[..4]
        .iter()
        .enumerate()
        .map(|(i, id)| doc! {"_id": id, "name": format!("Org {i}")})
        .collect();
    docs.push(doc! {"_id": orgs[4], "plan": "free"});
    mongo
        .collection::<Document>("organizations")
        .insert_many(docs)
        .await
        .unwrap();
    let teams: Vec<Document> = [0, 1, 4]
        .iter()
        .map(|o| doc! {"_id": ObjectId::new(), "name": format!("Team of {o}"), "org": orgs[*o]})
        .collect();
    mongo
        .collection::<Document>("teams")
        .insert_many(teams)
        .await
        .unwrap();
    let worker = env.start_worker();
    let server = ApiServer::start(env.config.clone()).await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    sign_in(&browser, &server).await;

    // Before the import: documents, no rows, no rejects.
    assert_eq!(
        import_counts(&browser, "organizations").await,
        ["5", "0", "0"]
    );
    assert_eq!(import_counts(&browser, "teams").await, ["3", "0", "0"]);
    wait_for_css(
        &browser,
        "#panel-import tr.unbalanced[data-collection='teams']",
        Duration::from_secs(10),
    )
    .await;

    click(&browser, "#import-run").await;
    let finished = "tr.run[data-kind='import.run'][data-state='succeeded']";
    wait_for_css(&browser, finished, Duration::from_secs(60)).await;
    // The import panel refreshes every 10 s; it comes to show both collections balanced.
    for collection in ["organizations", "teams"] {
        wait_for_css(
            &browser,
            &format!("#panel-import tr.balanced[data-collection='{collection}']"),
            Duration::from_secs(30),
        )
        .await;
    }
    assert_eq!(
        import_counts(&browser, "organizations").await,
        ["5", "4", "1"]
    );
    assert_eq!(import_counts(&browser, "teams").await, ["3", "2", "1"]);

    browser.close().await.unwrap();
    worker.stop().await;
    server.stop().await;
    env.cleanup().await;
}
