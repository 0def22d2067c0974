//! `--help` never prints the values of secret-bearing environment variables.

mod common;

#[test]
fn help_hides_urls_and_tokens_from_the_environment() {
    let secrets = [
        ("TIDINGS_URL", "postgres://app:hunter2-url@db/app"),
        ("TIDINGS_ADMIN_TOKEN", "tok-hunter2"),
        ("TIDINGS_PG_URL", "postgres://u:hunter2-pg@h/db"),
        ("TIDINGS_AMQP_URL", "amqp://u:hunter2-amqp@h/%2f"),
        ("TIDINGS_NATS_URL", "nats://hunter2-nats@h:4222"),
    ];
    for args in [
        &["--help"][..],
        &["dlq", "list", "--help"],
        &["dashboard", "--help"],
        &["topology", "--help"],
        &["bench", "--help"],
    ] {
        let mut cmd = common::bin();
        cmd.args(args).envs(secrets);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage"), "{args:?}: {text}");
        assert!(!text.contains("hunter2"), "{args:?} leaks:\n{text}");
    }
}
