//! `GET …/metrics`: one instance, one workload, or the whole stack in one call; labels,
//! grouping, the spec's enums, and speed at 1,000+ workloads.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WINDOW: &str = "start_date=2024-01-01T00:00:00Z&end_date=2024-01-01T00:05:00Z";

fn two_containers(slug: &str) -> Value {
    let mut w = workload(slug, container(None));
    w["workload"]["spec"]["containers"]["side"] = container(None);
    w
}

fn results(m: &Value) -> &Vec<Value> {
    m["data"]["matrix"]["results"].as_array().expect("matrix")
}

#[tokio::test]
async fn stack_wide_series_are_labelled_per_workload_instance_and_container() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let spec = spec();
    let mut ids = Vec::new();
    for slug in ["m-a", "m-b", "m-c"] {
        let (s, w) = api.create(&two_containers(slug)).await;
        assert_eq!(s, 200, "{w}");
        ids.push(w["workload"]["id"].as_str().unwrap().to_string());
    }

    // No workload_id: every instance of every workload, cpu and memory each.
    let (s, m) = api.get(&format!("/metrics?type=INSTANCE&{WINDOW}")).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        check_shape(&spec, "prometheusMetrics", &m),
        Vec::<String>::new()
    );
    let r = results(&m);
    assert_eq!(r.len(), 6);
    let seen: BTreeSet<(String, String, String)> = r
        .iter()
        .map(|x| {
            let l = &x["metric"];
            assert!(l.get("container_name").is_none(), "{l}");
            (
                l["__name__"].as_str().unwrap().into(),
                l["workload_id"].as_str().unwrap().into(),
                l["instance_name"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (id, slug) in ids.iter().zip(["m-a", "m-b", "m-c"]) {
        for name in ["cpu", "memory"] {
            assert!(seen.contains(&(
                name.to_string(),
                id.clone(),
                format!("{slug}-city-code-dfw-0")
            )));
        }
    }
    // INSTANCE metrics ignore granularity (spec): one sample a minute over 5 minutes.
    assert_eq!(r[0]["values"].as_array().unwrap().len(), 6);
    let (_, coarse) = api
        .get(&format!("/metrics?type=INSTANCE&granularity=PT1H&{WINDOW}"))
        .await;
    assert_eq!(coarse, m);

    // Per container: twice the series, each with its container, summing to the instance's.
    let (s, c) = api
        .get(&format!(
            "/metrics?type=INSTANCE&grouping=container_name&grouping=workload_id&grouping=instance_name&{WINDOW}"
        ))
        .await;
    assert_eq!(s, 200, "{c}");
    let rc = results(&c);
    assert_eq!(rc.len(), 12);
    let inst = "m-a-city-code-dfw-0";
    let cpu = |series: &[Value], container: Option<&str>| -> f64 {
        series
            .iter()
            .filter(|x| {
                x["metric"]["__name__"] == "cpu"
                    && x["metric"]["instance_name"] == inst
                    && container.is_none_or(|c| x["metric"]["container_name"] == c)
            })
            .map(|x| {
                x["values"][0]["value"]
                    .as_str()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            })
            .sum()
    };
    let total = cpu(r, None);
    let parts = cpu(rc, Some("app")) + cpu(rc, Some("side"));
    assert!((total - parts).abs() < 0.001, "{total} vs {parts}");

    // Grouped by workload only: one cpu and one memory series per workload.
    let (_, g) = api
        .get(&format!(
            "/metrics?type=INSTANCE&grouping=workload_id&{WINDOW}"
        ))
        .await;
    assert_eq!(results(&g).len(), 6);
    assert!(results(&g)[0]["metric"].get("instance_name").is_none());

    // Filters still narrow it; group_by's values are accepted.
    let (_, one) = api
        .get(&format!(
            "/metrics?type=INSTANCE&group_by=INSTANCE_NAME&instance_name={inst}&{WINDOW}"
        ))
        .await;
    assert_eq!(results(&one).len(), 2);
    let (_, bw) = api.get(&format!("/metrics?pop=AMS&{WINDOW}")).await;
    assert_eq!(results(&bw).len(), 0, "no instance in AMS");
    let (_, bw) = api.get(&format!("/metrics?pop=dfw&{WINDOW}")).await;
    assert_eq!(results(&bw).len(), 6);
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_enum_values_and_groupings_are_400s_naming_the_parameter() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    for (q, field) in [
        ("type=CPU", "type"),
        ("granularity=PT2M", "granularity"),
        ("region=MARS", "region"),
        ("group_by=CONTAINER", "group_by"),
        ("grouping=pod", "grouping"),
        ("type=BANDWIDTH&grouping=container_name", "grouping"),
        ("start_date=yesterday", "start_date"),
    ] {
        let (s, v) = api.get(&format!("/metrics?{q}")).await;
        assert_eq!((s, v["code"].as_i64()), (400, Some(3)), "{q}: {v}");
        assert_eq!(
            v["details"][0]["fieldViolations"][0]["field"], field,
            "{q}: {v}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_wide_answer_over_1200_workloads_is_fast() {
    const N: usize = 1200;
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let base = api.base.clone();
        let token = api.token.clone();
        tasks.push(tokio::spawn(async move {
            let c = http();
            for n in (chunk..N).step_by(8) {
                let r = c
                    .post(format!("{base}/workload/v1/stacks/{STACK}/workloads"))
                    .bearer_auth(&token)
                    .json(&workload(&format!("scale-{n}"), container(None)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // One call for every pod (the default window: the last hour, a sample a minute).
    let t = Instant::now();
    let r = api
        .client
        .get(api.url("/metrics?type=INSTANCE"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let answered = t.elapsed();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let took = t.elapsed();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(results(&m).len(), 2 * N);
    let instances: BTreeSet<&str> = results(&m)
        .iter()
        .map(|x| x["metric"]["instance_name"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), N);
    eprintln!(
        "stack-wide metrics over {N} workloads (1 h window): answered in {answered:?}, {} bytes received in {took:?}",
        body.len()
    );
    assert!(
        took < Duration::from_secs(3),
        "stack-wide metrics took {took:?}"
    );
    emu.shutdown().await;
}
