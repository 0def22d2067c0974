//! `tidings dashboard`: serves the admin API and web dashboard of `tidings-admin`.

use std::sync::Arc;

use tidings::transport::Transport;
use tidings_admin::{install_recorder, AdminConfig, AdminServer, AdminState};

use crate::opt::DashboardArgs;
use crate::Io;

pub(crate) async fn run(
    args: &DashboardArgs,
    transport: Arc<dyn Transport>,
    url: Option<&str>,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let mut state = AdminState::new(transport);
    match install_recorder() {
        Ok(h) => state = state.metrics(h),
        Err(e) => tracing::warn!("no /metrics: {e}"),
    }
    let saga_db = args
        .saga_db
        .clone()
        .or_else(|| url.filter(|u| u.starts_with("sqlite:")).map(str::to_string));
    if let Some(db) = saga_db {
        let sagas = crate::connect::scrub_result(crate::sagas::queries(&db).await, &db)?;
        state = state.sagas(sagas);
    }
    let mut config = AdminConfig::new(args.bind);
    if let Some(t) = &args.token {
        config = config.token(t.clone());
    }
    let auth = config.token.is_some();
    let server = AdminServer::bind(config, state).await?;
    writeln!(
        io.out,
        "dashboard on http://{}/{} (Ctrl-C to stop)",
        server.local_addr(),
        if auth {
            " — API needs the bearer token"
        } else {
            ""
        }
    )?;
    io.out.flush()?;
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
