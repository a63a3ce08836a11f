//! Workload API behaviour against a real HTTP client.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn auth_good_bad_expired_and_unknown_stack() {
    let mut cfg = fast_config();
    cfg.token_lifetime = Duration::from_secs(1);
    let emu = start(cfg).await;
    let base = emu.base_url.clone();
    let c = http();

    // Form body and JSON body both work; wrong secret does not.
    let r = c
        .post(format!("{base}/identity/v1/oauth2/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": "emulator-client", "client_secret": "emulator-secret"}))
        .send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 1);
    let r = c
        .post(format!("{base}/identity/v1/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(!body.contains("emulator-secret"));

    let api = Api::new(&emu).await;
    assert_eq!(api.get("/workloads").await.0, 200);

    // No token, a made-up token.
    let r = c.get(api.url("/workloads")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 16);
    let r = c
        .get(api.url("/workloads"))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A stack the client may not use.
    let (s, v) = api
        .call(
            Method::GET,
            &format!("{base}/workload/v1/stacks/other-stack/workloads"),
            None,
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (403, Some(7)));

    // Expiry.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, v) = api.get("/workloads").await;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    emu.shutdown().await;
}

#[tokio::test]
async fn crud_happy_path_matches_spec_shapes() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let spec = spec();

    let (s, created) = api.create(&workload("default-web", container(None))).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        check_shape(&spec, "v1CreateWorkloadResponse", &created),
        Vec::<String>::new()
    );
    let w = &created["workload"];
    let id = w["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(w["stackId"], STACK);
    assert_eq!(w["status"], "ACTIVE");
    assert_eq!(w["metadata"]["version"], "1");
    assert!(w["metadata"]["createdAt"].is_string());
    assert_eq!(w["metadata"]["labels"]["vk-node-name"], "vk-node");
    assert_eq!(w["spec"]["volumeClaimTemplates"][0]["phase"], "BOUND");

    let (s, got) = api.get(&format!("/workloads/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(
        check_shape(&spec, "v1GetWorkloadResponse", &got),
        Vec::<String>::new()
    );
    assert_eq!(got["workload"], created["workload"]);

    // Instance: named per docs/mapping.md, phases move on, shapes match.
    let name = "default-web-city-code-dfw-0";
    let i = api.instance(&id, name).await;
    assert!(
        ["SCHEDULING", "STARTING"].contains(&i["phase"].as_str().unwrap()),
        "{i}"
    );
    let i = api.wait_phase(&id, name, "RUNNING", 5).await;
    assert_eq!(
        check_shape(&spec, "workloadv1Instance", &i),
        Vec::<String>::new()
    );
    assert!(i["ipAddress"].as_str().unwrap().starts_with("10."));
    assert!(i["ipv6Address"].is_string());
    assert!(i["startedAt"].is_string());
    assert_eq!(i["location"]["cityCode"], "DFW");
    let cs = &i["containerStatuses"][0];
    assert_eq!(
        (
            cs["name"].as_str(),
            cs["phase"].as_str(),
            cs["ready"].as_bool()
        ),
        (Some("app"), Some("RUNNING"), Some(true))
    );
    let (s, list) = api.get(&format!("/workloads/{id}/instances")).await;
    assert_eq!(s, 200);
    assert_eq!(
        check_shape(&spec, "v1GetWorkloadInstancesResponse", &list),
        Vec::<String>::new()
    );
    assert_eq!(list["results"].as_array().unwrap().len(), 1);

    // PUT replaces the spec, bumps the version and restarts the instance.
    let mut body = workload("default-web", container(Some(vec!["sleep", "100"])));
    body["workload"]["metadata"]["labels"]["extra"] = json!("1");
    let (s, put) = api
        .call(
            Method::PUT,
            &api.url(&format!("/workloads/{id}")),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(
        check_shape(&spec, "v1PutWorkloadResponse", &put),
        Vec::<String>::new()
    );
    assert_eq!(put["workload"]["metadata"]["version"], "2");
    assert_eq!(put["workload"]["id"], id.as_str());
    assert_eq!(put["workload"]["metadata"]["labels"]["extra"], "1");
    assert_eq!(
        put["workload"]["metadata"]["createdAt"],
        w["metadata"]["createdAt"]
    );
    let i = api.instance(&id, name).await;
    assert_ne!(i["phase"], "RUNNING");
    assert_eq!(i["containerStatuses"][0]["restartCount"], 1);
    api.wait_phase(&id, name, "RUNNING", 5).await;

    // Restart call.
    let (s, _) = api
        .call(
            Method::POST,
            &api.url(&format!("/workloads/{id}/instances/{name}/power/restart")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let i = api.wait_phase(&id, name, "RUNNING", 5).await;
    assert_eq!(i["containerStatuses"][0]["restartCount"], 2);

    // Locations and metrics.
    let (s, loc) = api
        .call(
            Method::GET,
            &format!("{}/workload/v1/locations", api.base),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        check_shape(&spec, "v1GetLocationsResponse", &loc),
        Vec::<String>::new()
    );
    assert_eq!(loc["results"][0]["cityCode"], "DFW");
    let (s, m) = api
        .get(&format!(
            "/metrics?type=INSTANCE&workload_id={id}&granularity=PT5M"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        check_shape(&spec, "prometheusMetrics", &m),
        Vec::<String>::new()
    );
    let results = m["data"]["matrix"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "cpu and memory for one instance");
    assert!(results.iter().all(|r| r["metric"]["instance_name"] == name));
    let cpu: f64 = results[0]["values"][0]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cpu > 0.0 && cpu < 1.0);

    // Delete: 204, DELETING, then gone.
    let (s, v) = api
        .call(Method::DELETE, &api.url(&format!("/workloads/{id}")), None)
        .await;
    assert_eq!((s, v), (204, Value::Null));
    assert_eq!(api.instance(&id, name).await["phase"], "DELETING");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, v) = api.get(&format!("/workloads/{id}")).await;
    assert_eq!((s, v["code"].as_i64()), (404, Some(5)));
    assert_eq!(
        check_shape(&spec, "stackpathapiStatus", &v),
        Vec::<String>::new()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn duplicate_slug_and_validation() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    assert_eq!(api.create(&workload("dup", container(None))).await.0, 200);
    let (s, v) = api.create(&workload("dup", container(None))).await;
    assert_eq!((s, v["code"].as_i64()), (409, Some(6)), "{v}");

    let mut bad = workload(
        "Bad_Slug",
        json!({"resources": {"requests": {"cpu": "3", "memory": "2Gi"}}}),
    );
    bad["workload"]["targets"]["city-code"]["spec"]["deployments"]["selectors"][0]["values"] =
        json!(["XXX"]);
    let (s, v) = api.create(&bad).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(3)), "{v}");
    assert_eq!(v["details"][0]["@type"], "stackpath.rpc.BadRequest");
    let fields: Vec<&str> = v["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for want in [
        "workload.slug",
        "workload.spec.containers.app.image",
        "workload.spec.containers.app.resources.requests",
        "workload.targets.city-code.spec.deployments.selectors[0].values",
    ] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    let long = "a".repeat(64);
    let (s, _) = api.create(&workload(&long, container(None))).await;
    assert_eq!(s, 400);
    let mut no_containers = workload("empty", container(None));
    no_containers["workload"]["spec"]["containers"] = json!({});
    assert_eq!(api.create(&no_containers).await.0, 400);
    let mut args_only = workload("argsonly", container(None));
    args_only["workload"]["spec"]["containers"]["app"]["args"] = json!(["x"]);
    assert_eq!(api.create(&args_only).await.0, 400);
    // Not JSON.
    let r = api
        .client
        .post(api.url("/workloads"))
        .bearer_auth(&api.token)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn pagination_and_filter() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    for n in 0..25 {
        let mut w = workload(&format!("w-{n:02}"), container(None));
        w["workload"]["metadata"]["labels"]["vk-node-name"] =
            json!(if n % 5 == 0 { "five" } else { "other" });
        assert_eq!(api.create(&w).await.0, 200);
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (s, page) = api
            .get(&format!(
                "/workloads?page_request.first=10&page_request.after={after}"
            ))
            .await;
        assert_eq!(s, 200);
        assert_eq!(page["pageInfo"]["totalCount"], "25");
        for w in page["results"].as_array().unwrap() {
            seen.push(w["slug"].as_str().unwrap().to_string());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    }
    let want: Vec<String> = (0..25).map(|n| format!("w-{n:02}")).collect();
    assert_eq!(seen, want);

    let (s, page) = api
        .get("/workloads?page_request.filter=metadata.labels.vk-node-name%3D%22five%22")
        .await;
    assert_eq!(s, 200);
    let slugs: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["w-00", "w-05", "w-10", "w-15", "w-20"]);
    let (_, page) = api
        .get("/workloads?page_request.filter=slug%3D%22w-07%22")
        .await;
    assert_eq!(page["results"][0]["slug"], "w-07");
    assert_eq!(page["pageInfo"]["totalCount"], "1");
    let (s, v) = api.get("/workloads?page_request.after=notacursor").await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(3)));
    emu.shutdown().await;
}

#[tokio::test]
async fn delete_behind_the_back_and_admin_instance_faults() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let (_, w) = api.create(&workload("victim", container(None))).await;
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    let name = "victim-city-code-dfw-0";
    api.wait_phase(&id, name, "RUNNING", 5).await;

    let c = http();
    let r = c
        .post(format!("{}/_emulator/instances/{id}/fail", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let i = api.instance(&id, name).await;
    assert_eq!(i["phase"], "FAILED");
    assert_eq!(i["containerStatuses"][0]["phase"], "FAILED");
    assert_eq!(i["reason"], "InjectedFailure");

    let r = c
        .post(format!("{}/_emulator/instances/{id}/restart", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let i = api.wait_phase(&id, name, "RUNNING", 5).await;
    assert_eq!(i["containerStatuses"][0]["restartCount"], 1);

    // Failing new instances by fault setting.
    let r = c
        .put(format!("{}/_emulator/faults", api.base))
        .json(&json!({"fail_new_instances": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, w2) = api.create(&workload("doomed", container(None))).await;
    let id2 = w2["workload"]["id"].as_str().unwrap();
    api.wait_phase(id2, "doomed-city-code-dfw-0", "FAILED", 5)
        .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn sort_by_orders_lists_and_pages_by_position() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    for slug in ["srt-b", "srt-c", "srt-a"] {
        assert_eq!(api.create(&workload(slug, container(None))).await.0, 200);
    }
    let slugs = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["slug"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = api.get("/workloads?page_request.sort_by=slug").await;
    assert_eq!(slugs(&v), ["srt-a", "srt-b", "srt-c"]);
    let (_, v) = api
        .get("/workloads?page_request.sort_by=slug%20desc&page_request.first=2")
        .await;
    assert_eq!(slugs(&v), ["srt-c", "srt-b"]);
    assert_eq!(v["pageInfo"]["hasNextPage"], true);
    let after = v["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    let (_, v) = api
        .get(&format!(
            "/workloads?page_request.sort_by=-slug&page_request.first=2&page_request.after={after}"
        ))
        .await;
    assert_eq!(slugs(&v), ["srt-a"]);
    let (s, v) = api
        .get("/workloads?page_request.sort_by=slug%20sideways")
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(3)));
    // Without sort_by: creation order, as before.
    let (_, v) = api.get("/workloads").await;
    assert_eq!(slugs(&v), ["srt-b", "srt-c", "srt-a"]);
    emu.shutdown().await;
}
