//! Client overhead per call: `Client::get_workload` against the in-process emulator, beside a
//! raw reqwest GET of the same URL with the same token (bytes only, and bytes + the same JSON
//! decode), in one run. The difference is what the client adds: rate limiter, token cache,
//! retry bookkeeping, observer, tracing, error mapping.
//!
//! Run: `cargo bench -p stackpath-client --bench client`.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use stackpath_client::model::{
    ContainerSpec, DeploymentSpec, MatchExpression, ResourceRequirements, Target, TargetSpec,
    Workload, WorkloadResponse, WorkloadSpec,
};
use stackpath_client::{Client, Config};
use stackpath_emulator::EmulatorConfig;

fn workload() -> Workload {
    let sized = BTreeMap::from([
        ("cpu".to_owned(), "1".to_owned()),
        ("memory".to_owned(), "2Gi".to_owned()),
    ]);
    Workload {
        name: Some("bench".into()),
        slug: Some("bench".into()),
        spec: Some(WorkloadSpec {
            containers: BTreeMap::from([(
                "app".to_owned(),
                ContainerSpec {
                    image: Some("nginx:1.27".into()),
                    resources: Some(ResourceRequirements {
                        requests: sized.clone(),
                        limits: sized,
                    }),
                    ..ContainerSpec::default()
                },
            )]),
            ..WorkloadSpec::default()
        }),
        targets: BTreeMap::from([(
            "city-code".to_owned(),
            Target {
                spec: Some(TargetSpec {
                    deployment_scope: Some("cityCode".into()),
                    deployments: Some(DeploymentSpec {
                        min_replicas: Some(1),
                        max_replicas: Some(1),
                        selectors: vec![MatchExpression {
                            key: Some("cityCode".into()),
                            operator: Some("in".into()),
                            values: vec!["DFW".into()],
                        }],
                        ..DeploymentSpec::default()
                    }),
                }),
            },
        )]),
        ..Workload::default()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let emu = rt
        .block_on(stackpath_emulator::start(
            EmulatorConfig::default(),
            "127.0.0.1:0".parse().expect("addr"),
            None,
        ))
        .expect("emulator");
    let mut cfg = Config::new(
        &emu.base_url,
        "demo-stack",
        "emulator-client",
        "emulator-secret",
    )
    .expect("config");
    cfg.rate_limit = None;
    let client = Client::new(cfg).expect("client");
    let id = rt
        .block_on(client.create_workload(&workload()))
        .expect("create")
        .id
        .expect("id");

    let raw = reqwest::Client::new();
    let token: String = rt.block_on(async {
        let resp: serde_json::Value = raw
            .post(format!("{}/identity/v1/oauth2/token", emu.base_url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "emulator-client"),
                ("client_secret", "emulator-secret"),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        resp["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    });
    let url = format!(
        "{}/workload/v1/stacks/demo-stack/workloads/{id}",
        emu.base_url
    );

    let mut group = c.benchmark_group("get_workload");
    group
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("raw_reqwest_bytes", |b| {
        b.iter(|| {
            rt.block_on(async {
                raw.get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body")
            })
        })
    });
    group.bench_function("raw_reqwest_decode", |b| {
        b.iter(|| {
            rt.block_on(async {
                let bytes = raw
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body");
                serde_json::from_slice::<WorkloadResponse>(&bytes).expect("decode")
            })
        })
    });
    group.bench_function("stackpath_client", |b| {
        b.iter(|| rt.block_on(client.get_workload(&id)).expect("get"))
    });
    group.finish();
    rt.block_on(emu.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
