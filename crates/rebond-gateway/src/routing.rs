//! Where a signed-in person goes: the configuration's `[[routes]]` and the route table
//! (which override the directory), the workstation the directory names, and the choices
//! offered to a group. The gateway alone decides; the page never names a host.

use std::path::Path;

use rebond_directory::{Route, Store, Trust, Wake};
use rebond_wire::ErrorCode;
use tracing::warn;

use crate::config::{Config, DirectorySettings};

/// A CA file, or no verification (the configuration checked that one is said).
fn ca_or_insecure(ca: Option<&Path>) -> Trust {
    match ca {
        Some(ca) => Trust::CaFile(ca.display().to_string()),
        None => Trust::Insecure,
    }
}

/// A route from the configuration or the route table, which override the directory.
pub(crate) fn route_override(config: &Config, store: &Store, user: &str) -> Result<Option<Route>, ErrorCode> {
    if let Some(r) = config.routes.iter().find(|r| rebond_directory::normalize_user(&r.user) == user) {
        let trust = match &r.pin_sha256 {
            Some(pin) => Trust::Pinned(pin.clone()),
            None => ca_or_insecure(r.ca_file.as_deref()),
        };
        let route = Route::parse_url(&r.workstation, trust).and_then(|mut route| {
            route.wake = r.wake_mac.as_deref().map(|mac| Wake::parse(mac, r.wake_address.as_deref())).transpose()?;
            Ok(route)
        });
        return route.map(Some).map_err(|e| {
            warn!(error = %e, %user, "invalid route in the configuration");
            ErrorCode::NoWorkstation
        });
    }
    store.route(user).map_err(|e| {
        warn!(error = %e, %user, "cannot read the route table");
        ErrorCode::NoWorkstation
    })
}

/// The route of a workstation named by the directory.
pub(crate) fn directory_route(d: &DirectorySettings, host: &str) -> Result<Route, ErrorCode> {
    let valid = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if !valid {
        warn!(%host, "the directory names a workstation that is not a host name");
        return Err(ErrorCode::NoWorkstation);
    }
    Ok(Route { host: host.to_owned(), port: d.workstation_port, trust: ca_or_insecure(d.workstation_ca_file.as_deref()), wake: None })
}

/// The workstations a person may choose from: their own first, then those offered to
/// their groups (`workstation_choices`), each once.
pub(crate) fn workstation_choices(config: &Config, groups: &[String], own: Option<&Route>) -> Vec<Route> {
    let mut choices: Vec<Route> = own.cloned().into_iter().collect();
    for c in config.workstation_choices.iter().filter(|c| groups.iter().any(|g| g.eq_ignore_ascii_case(&c.group))) {
        let trust = ca_or_insecure(c.ca_file.as_deref());
        for w in &c.workstations {
            if let Ok(r) = Route::parse_url(w, trust.clone()) {
                if !choices.iter().any(|x| x.url() == r.url()) {
                    choices.push(r);
                }
            }
        }
    }
    choices
}
