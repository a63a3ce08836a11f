//! Start-up refusals: every missing setting at once, wrong credentials, wrong city, wrong
//! stack; each names the setting to fix, never prints the secret, and never panics.

use std::process::Command;
use std::time::Duration;

use e2e::{Env, binary};

fn run_to_exit(mut cmd: Command) -> (bool, String) {
    let out = cmd.output().expect("running vk-stackpath");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "panic: {text}");
    (out.status.success(), text)
}

#[test]
fn missing_settings_are_listed_together() {
    let mut cmd = Command::new(binary());
    cmd.args(["run", "--metrics-addr", "off"])
        .env_clear()
        .env("SP_CITY_CODE", "d-f-w");
    let (ok, text) = run_to_exit(cmd);
    assert!(!ok);
    for needle in ["SP_STACK_ID", "SP_CLIENT_ID", "SP_CLIENT_SECRET", "`d-f-w`"] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_city_or_stack_is_named() -> anyhow::Result<()> {
    let env = Env::start("cfg").await?;
    let cases = [
        ("SP_CLIENT_SECRET", "wrong-secret-value", "SP_CLIENT_SECRET"),
        ("SP_CITY_CODE", "xyz", "SP_CITY_CODE `XYZ`"),
        (
            "SP_STACK_ID",
            "someone-elses-stack",
            "SP_STACK_ID `someone-elses-stack`",
        ),
    ];
    for (var, value, needle) in cases {
        let (mut cmd, _) = env.daemon_command(&env.node);
        cmd.env(var, value);
        let (ok, text) = tokio::task::spawn_blocking(move || run_to_exit(cmd)).await?;
        assert!(!ok, "{var}={value} must be refused");
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
        assert!(
            !text.contains("wrong-secret-value"),
            "secret printed:\n{text}"
        );
        assert!(
            !text.contains(e2e::CLIENT_SECRET),
            "secret printed:\n{text}"
        );
    }
    // Nothing was registered by the refused starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!env.node_ready(&env.node).await);
    Ok(())
}
