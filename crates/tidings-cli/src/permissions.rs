//! `tidings topology --permissions rabbitmq|rabbitmq-json|nats|postgres`: the services of a
//! topology report ([`Services`], grouped by `--service`) and, from the transport that
//! knows its own names, the least-privilege permissions of each: a `rabbitmqctl` script
//! or definitions JSON, a `nats-server` authorization block, a psql script. Passwords are
//! references to `TIDINGS_PASSWORD_<USER>` variables, never values.

use anyhow::Context;
use tidings::access::{ServiceAccess, Services};
use tidings::topology::TopologyReport;

use crate::opt::{PermissionsTarget, TopologyArgs};

/// The services of `report` as `args` groups them.
pub(crate) fn services(
    report: &TopologyReport,
    args: &TopologyArgs,
) -> anyhow::Result<Vec<ServiceAccess>> {
    let mut services = Services::new().app(args.app_service.clone());
    for (name, endpoints) in &args.services {
        services = services.group(name.clone(), endpoints.clone());
    }
    Ok(services.resolve(report)?)
}

/// The permissions of every service of `report` for `target`, ready to print.
pub(crate) fn render(
    report: &TopologyReport,
    args: &TopologyArgs,
    target: PermissionsTarget,
) -> anyhow::Result<String> {
    let services = services(report, args)?;
    let prefix = args.user_prefix.as_str();
    Ok(match target {
        PermissionsTarget::Rabbitmq => {
            let perms = tidings::rabbitmq::permissions::permissions(&services, prefix);
            tidings::rabbitmq::permissions::rabbitmqctl_script(&perms, &args.vhost)
        }
        PermissionsTarget::RabbitmqJson => {
            let perms = tidings::rabbitmq::permissions::permissions(&services, prefix);
            let defs = tidings::rabbitmq::permissions::definitions(&perms, &args.vhost);
            let mut text =
                serde_json::to_string_pretty(&defs).context("writing the definitions")?;
            text.push('\n');
            text
        }
        PermissionsTarget::Nats => {
            let perms = tidings::nats::permissions::permissions(
                &services,
                prefix,
                &args.nats_prefix,
                args.partitions,
            );
            tidings::nats::permissions::server_config(&perms)
        }
        PermissionsTarget::Postgres => {
            tidings::postgres::permissions::sql_script(&services, &args.schema, prefix)
        }
    })
}
