//! The configuration of a replacement container: the old container's own settings on the new
//! image.
//!
//! Docker stores a container's configuration merged with its image's defaults (command,
//! entrypoint, environment, labels, …). Copied naively, the old image's defaults would override
//! the new image's. So every setting equal to the old image's default is left out, and the new
//! image's default applies; what the container set itself (compose's `command:`,
//! `environment:`, labels, …) is kept.
//!
//! Copied from the host configuration: binds, mounts, network mode, port bindings, restart
//! policy, logging, DNS and extra hosts, capabilities, privileged, init, tmpfs, sysctls,
//! resources (memory, CPU, pids, ulimits, shm), security options, read-only root, devices,
//! groups, `volumes_from`. Networks other than the network mode are connected after creation
//! with their aliases (minus the old container's own name and id). Not carried over: anonymous
//! volumes' contents (the new container gets fresh ones), static IP and MAC addresses, the
//! host name when it was Docker's default (the old short id).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, ImageConfig,
    NetworkingConfig,
};

/// How to create one replacement container.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// Body for `POST /containers/create`, image set to the new image.
    pub body: ContainerCreateBody,
    /// Networks to connect after creation (the engine accepts one network at creation).
    pub extra_networks: Vec<(String, EndpointSettings)>,
}

impl Template {
    /// The host ports the container binds by number (`-p 8080:80`), sorted. Its replacement
    /// cannot start while it holds them.
    pub(crate) fn fixed_host_ports(&self) -> Vec<String> {
        let mut ports: Vec<String> = self
            .body
            .host_config
            .iter()
            .flat_map(|host| host.port_bindings.iter())
            .flat_map(|bindings| bindings.values())
            .flatten()
            .flatten()
            .filter_map(|binding| binding.host_port.clone())
            .filter(|port| !port.is_empty() && port != "0")
            .collect();
        ports.sort();
        ports.dedup();
        ports
    }
}

/// Builds the replacement of `old` running `image`, labelled `service_label=service`.
/// `old_image` is the configuration of the old container's image, when it still exists.
pub(crate) fn replacement(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image: &str,
    service_label: &str,
    service: &str,
) -> Template {
    let config = old.config.clone().unwrap_or_default();
    let img = old_image.cloned().unwrap_or_default();
    let old_id = old.id.clone().unwrap_or_default();
    let old_name = old
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();

    let mut labels: HashMap<String, String> = config
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| img.labels.as_ref().and_then(|l| l.get(k)) != Some(v))
        .collect();
    labels.insert(service_label.to_owned(), service.to_owned());

    let hostname = config.hostname.filter(|h| set_by_user(h, &old_id));

    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        hostname,
        domainname: config.domainname.filter(|d| !d.is_empty()),
        user: unless_default(config.user.filter(|u| !u.is_empty()), &img.user),
        cmd: unless_default(non_empty(config.cmd), &non_empty(img.cmd.clone())),
        entrypoint: unless_default(
            non_empty(config.entrypoint),
            &non_empty(img.entrypoint.clone()),
        ),
        env: non_empty(Some(without(config.env, &img.env))),
        working_dir: unless_default(
            config.working_dir.filter(|w| !w.is_empty()),
            &img.working_dir,
        ),
        healthcheck: unless_default(config.healthcheck, &img.healthcheck),
        stop_signal: unless_default(config.stop_signal, &img.stop_signal),
        stop_timeout: config.stop_timeout,
        exposed_ports: non_empty(Some(without(config.exposed_ports, &img.exposed_ports))),
        volumes: non_empty(Some(without(config.volumes, &img.volumes))),
        labels: Some(labels),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        host_config: old.host_config.as_ref().map(host_config),
        ..Default::default()
    };

    let network_mode = old
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let mut primary = None;
    let mut extra_networks = Vec::new();
    let networks = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let mut networks: Vec<_> = networks.into_iter().collect();
    networks.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, endpoint) in networks {
        if ["bridge", "host", "none", "default"].contains(&name.as_str()) {
            continue;
        }
        let endpoint = endpoint_settings(&endpoint, &old_id, &old_name);
        if name == network_mode {
            primary = Some((name, endpoint));
        } else {
            extra_networks.push((name, endpoint));
        }
    }
    let body = ContainerCreateBody {
        networking_config: primary.map(|(name, endpoint)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(name, endpoint)])),
        }),
        ..body
    };
    Template {
        body,
        extra_networks,
    }
}

/// The endpoint settings worth carrying over: aliases (minus the old container's own name and
/// id, which the engine adds by itself), links and driver options.
fn endpoint_settings(old: &EndpointSettings, old_id: &str, old_name: &str) -> EndpointSettings {
    let aliases: Vec<String> = old
        .aliases
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a != old_name && !(a.len() >= 12 && old_id.starts_with(a.as_str())))
        .collect();
    EndpointSettings {
        aliases: non_empty(Some(aliases)),
        links: old.links.clone(),
        driver_opts: old.driver_opts.clone(),
        ..Default::default()
    }
}

/// Whether the host name was chosen for the container rather than Docker's default (its short
/// id), which the replacement must not inherit.
fn set_by_user(hostname: &str, old_id: &str) -> bool {
    let docker_default = hostname.len() >= 12 && old_id.starts_with(hostname);
    !hostname.is_empty() && !docker_default
}

/// The part of the old host configuration that is copied (see the module documentation).
fn host_config(old: &HostConfig) -> HostConfig {
    HostConfig {
        binds: old.binds.clone(),
        mounts: old.mounts.clone(),
        network_mode: old.network_mode.clone(),
        port_bindings: old.port_bindings.clone(),
        publish_all_ports: old.publish_all_ports,
        restart_policy: old.restart_policy.clone(),
        log_config: old.log_config.clone(),
        extra_hosts: old.extra_hosts.clone(),
        dns: old.dns.clone(),
        dns_options: old.dns_options.clone(),
        dns_search: old.dns_search.clone(),
        cap_add: old.cap_add.clone(),
        cap_drop: old.cap_drop.clone(),
        privileged: old.privileged,
        init: old.init,
        tmpfs: old.tmpfs.clone(),
        sysctls: old.sysctls.clone(),
        memory: old.memory,
        memory_reservation: old.memory_reservation,
        memory_swap: old.memory_swap,
        nano_cpus: old.nano_cpus,
        cpu_shares: old.cpu_shares,
        cpu_period: old.cpu_period,
        cpu_quota: old.cpu_quota,
        pids_limit: old.pids_limit,
        ulimits: old.ulimits.clone(),
        shm_size: old.shm_size,
        security_opt: old.security_opt.clone(),
        readonly_rootfs: old.readonly_rootfs,
        devices: old.devices.clone(),
        group_add: old.group_add.clone(),
        volumes_from: old.volumes_from.clone(),
        links: old.links.clone(),
        ..Default::default()
    }
}

/// `value`, unless it equals the image default (then the new image's default applies).
fn unless_default<T: PartialEq>(value: Option<T>, image_default: &Option<T>) -> Option<T> {
    match (&value, image_default) {
        (Some(v), Some(d)) if v == d => None,
        _ => value,
    }
}

/// `None` for an empty list.
fn non_empty<T>(value: Option<Vec<T>>) -> Option<Vec<T>> {
    value.filter(|v| !v.is_empty())
}

/// The entries of `list` that are not in `image_default`.
fn without(list: Option<Vec<String>>, image_default: &Option<Vec<String>>) -> Vec<String> {
    let defaults = image_default.as_deref().unwrap_or_default();
    list.unwrap_or_default()
        .into_iter()
        .filter(|e| !defaults.contains(e))
        .collect()
}
