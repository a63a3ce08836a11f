//! "The ID or slug of the workload": every route with a workload reference answers the same
//! for the slug as for the id (StackPath's own Go provider addresses workloads by slug).

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use stackpath_emulator::EmulatorConfig;

const SLUG: &str = "default-web";
const INSTANCE: &str = "default-web-city-code-dfw-0";

async fn setup(run_containers: bool) -> (stackpath_emulator::RunningEmulator, Api, String) {
    let emu = start(EmulatorConfig {
        run_containers,
        ..fast_config()
    })
    .await;
    let api = Api::new(&emu).await;
    let (s, w) = api
        .create(&workload(
            SLUG,
            container(Some(vec!["sh", "-c", "echo one; echo two; sleep 3600"])),
        ))
        .await;
    assert_eq!(s, 200, "{w}");
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    assert_ne!(id, SLUG);
    api.wait_phase(&id, INSTANCE, "RUNNING", 10).await;
    (emu, api, id)
}

/// The two answers, with what legitimately moves between two reads taken out.
fn same(a: &Value, b: &Value) {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for k in ["updatedAt", "version"] {
                o.remove(k);
            }
            for (_, x) in o.iter_mut() {
                *x = strip(x);
            }
        } else if let Some(a) = v.as_array_mut() {
            for x in a.iter_mut() {
                *x = strip(x);
            }
        }
        v
    }
    assert_eq!(strip(a), strip(b));
}

#[tokio::test]
async fn reads_by_slug_equal_reads_by_id() {
    let (emu, api, id) = setup(true).await;
    for path in [
        "/workloads/{}".to_string(),
        "/workloads/{}/instances".to_string(),
        format!("/workloads/{{}}/instances/{INSTANCE}"),
    ] {
        let (s1, by_id) = api.get(&path.replace("{}", &id)).await;
        let (s2, by_slug) = api.get(&path.replace("{}", SLUG)).await;
        assert_eq!((s1, s2), (200, 200), "{path}: {by_id} / {by_slug}");
        same(&by_id, &by_slug);
    }
    // Logs: the process printed two fixed lines.
    for _ in 0..100 {
        if api.logs(&id, INSTANCE, "").await.1.contains("two") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s1, l1) = api.logs(&id, INSTANCE, "").await;
    let (s2, l2) = api.logs(SLUG, INSTANCE, "").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(l1, "one\ntwo\n");
    assert_eq!(l1, l2);
    // Metrics over a fixed window.
    let q = "type=INSTANCE&start_date=2024-01-01T00:00:00Z&end_date=2024-01-01T00:10:00Z";
    let (s1, m1) = api.get(&format!("/metrics?{q}&workload_id={id}")).await;
    let (s2, m2) = api.get(&format!("/metrics?{q}&workload_id={SLUG}")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(m1, m2);
    assert_eq!(m1["data"]["matrix"]["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        m1["data"]["matrix"]["results"][0]["metric"]["workload_id"],
        id.as_str()
    );
    // An unknown reference is still a 404 everywhere.
    let (s, v) = api.get("/workloads/no-such-workload").await;
    assert_eq!((s, v["code"].as_i64()), (404, Some(5)));
    let (s, _) = api
        .get(&format!("/workloads/no-such-workload/instances/{INSTANCE}"))
        .await;
    assert_eq!(s, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn writes_by_slug_act_on_the_same_workload() {
    let (emu, api, id) = setup(false).await;
    // PATCH by slug, then by id: the same workload, version 2 then 3.
    let patch = json!({"workload": {"metadata": {"labels": {"extra": "1"}}}});
    let (s, by_slug) = api
        .call(
            Method::PATCH,
            &api.url(&format!("/workloads/{SLUG}")),
            Some(&patch),
        )
        .await;
    assert_eq!(s, 200, "{by_slug}");
    assert_eq!(by_slug["workload"]["id"], id.as_str());
    assert_eq!(by_slug["workload"]["metadata"]["version"], "2");
    let (s, by_id) = api
        .call(
            Method::PATCH,
            &api.url(&format!("/workloads/{id}")),
            Some(&patch),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(by_id["workload"]["metadata"]["version"], "3");
    same(&by_slug, &by_id);

    // PUT by slug (the path's `{workload.id}`), with the body's id absent or the real one.
    let (_, cur) = api.get(&format!("/workloads/{id}")).await;
    let mut body = json!({"workload": cur["workload"].clone()});
    let (s, put) = api
        .call(
            Method::PUT,
            &api.url(&format!("/workloads/{SLUG}")),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(put["workload"]["id"], id.as_str());
    assert_eq!(put["workload"]["metadata"]["version"], "4");
    body["workload"].as_object_mut().unwrap().remove("id");
    let (s, put) = api
        .call(
            Method::PUT,
            &api.url(&format!("/workloads/{id}")),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(put["workload"]["metadata"]["version"], "5");

    // Restart by slug: the instance's restart count rises, read by id.
    let before = api.instance(&id, INSTANCE).await["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap();
    let (s, _) = api
        .call(
            Method::POST,
            &api.url(&format!(
                "/workloads/{SLUG}/instances/{INSTANCE}/power/restart"
            )),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let after = api.instance(&id, INSTANCE).await["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap();
    assert_eq!(after, before + 1);

    // The admin fault routes take the slug too.
    let r = api
        .client
        .post(format!("{}/_emulator/instances/{SLUG}/fail", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api.instance(&id, INSTANCE).await["phase"], "FAILED");

    // DELETE by slug: the workload (read by id) is deleting, then gone.
    let (s, _) = api
        .call(
            Method::DELETE,
            &api.url(&format!("/workloads/{SLUG}")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(api.instance(&id, INSTANCE).await["phase"], "DELETING");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(api.get(&format!("/workloads/{id}")).await.0, 404);
    assert_eq!(api.get(&format!("/workloads/{SLUG}")).await.0, 404);
    emu.shutdown().await;
}
