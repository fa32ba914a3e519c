//! A pod's `/etc/resolv.conf` and `/etc/hosts`, as the kubelet writes them: the
//! cluster nameserver with the pod's search path and `ndots:5` (or the host's file
//! for `dnsPolicy: Default` and hostNetwork pods), `spec.dnsConfig` merged in; the
//! localhost lines, the pod's own name (FQDN when `subdomain` is set) and
//! `hostAliases`. Written under the pod directory and bind-mounted into each container.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use coxswain_api::k8s::Pod;

use super::{NetworkError, uses_host_network};

/// The cluster DNS settings a network hands to pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The nameservers (the node-local DNS server's address).
    pub nameservers: Vec<IpAddr>,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

/// Where the host's own files are (`/etc/...`; elsewhere in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFiles {
    /// The host's resolv.conf.
    pub resolv_conf: PathBuf,
    /// The host's hosts file.
    pub hosts: PathBuf,
}

impl Default for HostFiles {
    fn default() -> Self {
        Self {
            resolv_conf: "/etc/resolv.conf".into(),
            hosts: "/etc/hosts".into(),
        }
    }
}

/// The files written for a pod, to be mounted at `/etc/resolv.conf` and `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDnsFiles {
    /// The pod's resolv.conf.
    pub resolv_conf: PathBuf,
    /// The pod's hosts file.
    pub hosts: PathBuf,
}

impl PodDnsFiles {
    /// Where they are kept in a pod directory.
    pub fn in_pod_dir(pod_dir: &Path) -> Self {
        Self {
            resolv_conf: pod_dir.join("resolv.conf"),
            hosts: pod_dir.join("etc-hosts"),
        }
    }

    /// (file, mount destination) pairs.
    pub fn mounts(&self) -> [(&Path, &'static str); 2] {
        [
            (self.resolv_conf.as_path(), "/etc/resolv.conf"),
            (self.hosts.as_path(), "/etc/hosts"),
        ]
    }
}

/// Writes the pod's DNS files under `pod_dir` (overwriting: they follow the pod).
pub fn write(
    pod_dir: &Path,
    pod: &Pod,
    ips: &[IpAddr],
    dns: &ClusterDns,
    host: &HostFiles,
) -> Result<PodDnsFiles, NetworkError> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(NetworkError::io(p, e)),
    };
    let files = PodDnsFiles::in_pod_dir(pod_dir);
    std::fs::create_dir_all(pod_dir).map_err(|e| NetworkError::io(pod_dir, e))?;
    let resolv = resolv_conf(pod, dns, &read(&host.resolv_conf)?);
    std::fs::write(&files.resolv_conf, resolv)
        .map_err(|e| NetworkError::io(&files.resolv_conf, e))?;
    let hosts = hosts_file(pod, ips, &dns.domain, &read(&host.hosts)?);
    std::fs::write(&files.hosts, hosts).map_err(|e| NetworkError::io(&files.hosts, e))?;
    Ok(files)
}

/// The pod's resolv.conf for its `dnsPolicy` and `dnsConfig`.
pub fn resolv_conf(pod: &Pod, dns: &ClusterDns, host_resolv_conf: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "Default" => return with_dns_config(parse(host_resolv_conf), &spec).render(),
        "ClusterFirstWithHostNet" => Some(true),
        _ if uses_host_network(pod) => {
            return with_dns_config(parse(host_resolv_conf), &spec).render();
        }
        _ => Some(true),
    };
    let mut conf = Resolv::default();
    if cluster.is_some() {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let d = &dns.domain;
        conf.nameservers = dns.nameservers.iter().map(ToString::to_string).collect();
        conf.search = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        conf.options = vec!["ndots:5".into()];
    }
    with_dns_config(conf, &spec).render()
}

/// The pod's hosts file: localhost lines, its own name, `hostAliases`.
pub fn hosts_file(pod: &Pod, ips: &[IpAddr], domain: &str, host_hosts: &str) -> String {
    if uses_host_network(pod) {
        return host_hosts.to_string();
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let hostname = spec
        .hostname
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_else(|| "pod".into());
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for ip in ips {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{ns}.svc.{domain}\t{hostname}\n"
            )),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for alias in spec.host_aliases.iter().flatten() {
        let names = alias.hostnames.clone().unwrap_or_default();
        if !names.is_empty() {
            out.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                alias.ip,
                names.join("\t")
            ));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Resolv {
    nameservers: Vec<String>,
    search: Vec<String>,
    options: Vec<String>,
}

impl Resolv {
    fn render(&self) -> String {
        let mut out = String::new();
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn parse(text: &str) -> Resolv {
    let mut conf = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => conf.nameservers.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => conf.search = words.map(String::from).collect(),
            Some("options") => conf.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    conf
}

/// Merges `spec.dnsConfig`: nameservers and searches appended (deduplicated),
/// options replacing same-named ones.
fn with_dns_config(mut conf: Resolv, spec: &k8s_openapi::api::core::v1::PodSpec) -> Resolv {
    let Some(extra) = spec.dns_config.as_ref() else {
        return conf;
    };
    for ns in extra.nameservers.iter().flatten() {
        if !conf.nameservers.contains(ns) {
            conf.nameservers.push(ns.clone());
        }
    }
    for s in extra.searches.iter().flatten() {
        if !conf.search.contains(s) {
            conf.search.push(s.clone());
        }
    }
    for opt in extra.options.iter().flatten() {
        let Some(name) = opt.name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let rendered = match &opt.value {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        };
        conf.options.retain(|o| o.split(':').next() != Some(name));
        conf.options.push(rendered);
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn dns() -> ClusterDns {
        ClusterDns {
            nameservers: vec!["10.244.3.1".parse().unwrap()],
            domain: "cluster.local".into(),
        }
    }

    const HOST: &str = "# host\nnameserver 192.168.1.1\nsearch corp.example\n";

    #[test]
    fn cluster_first_uses_the_node_dns_and_the_pod_search_path() {
        let text = resolv_conf(&pod(serde_json::json!({"containers": []})), &dns(), HOST);
        assert_eq!(
            text,
            "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.244.3.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_policy_and_host_network_get_the_hosts_resolv_conf() {
        let default = pod(serde_json::json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(
            resolv_conf(&default, &dns(), HOST),
            "search corp.example\nnameserver 192.168.1.1\n"
        );
        let host_net = pod(serde_json::json!({"containers": [], "hostNetwork": true}));
        assert!(resolv_conf(&host_net, &dns(), HOST).contains("192.168.1.1"));
        let with_host_net = pod(serde_json::json!({
            "containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert!(resolv_conf(&with_host_net, &dns(), HOST).contains("nameserver 10.244.3.1"));
        assert_eq!(
            hosts_file(&host_net, &[], "cluster.local", "1.2.3.4 h\n"),
            "1.2.3.4 h\n"
        );
    }

    #[test]
    fn dns_config_is_merged_and_none_uses_it_alone() {
        let spec = serde_json::json!({"containers": [], "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}});
        let text = resolv_conf(&pod(spec.clone()), &dns(), HOST);
        assert!(
            text.contains("nameserver 10.244.3.1\nnameserver 1.1.1.1\n"),
            "{text}"
        );
        assert!(text.contains("cluster.local extra.example\n"), "{text}");
        assert!(text.contains("options ndots:2 edns0\n"), "{text}");
        let mut none = spec;
        none["dnsPolicy"] = "None".into();
        assert_eq!(
            resolv_conf(&pod(none), &dns(), HOST),
            "search extra.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn hosts_has_localhost_the_pod_name_and_aliases() {
        let ip: IpAddr = "10.244.3.7".parse().unwrap();
        let plain = hosts_file(
            &pod(serde_json::json!({"containers": []})),
            &[ip],
            "cluster.local",
            "",
        );
        assert!(plain.contains("127.0.0.1\tlocalhost\n"));
        assert!(plain.ends_with("10.244.3.7\tweb-0\n"), "{plain}");
        let sub = pod(
            serde_json::json!({"containers": [], "hostname": "db", "subdomain": "pg",
            "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["a.example", "b"]}]}),
        );
        let text = hosts_file(&sub, &[ip], "cluster.local", "");
        assert!(
            text.contains("10.244.3.7\tdb.pg.shop.svc.cluster.local\tdb\n"),
            "{text}"
        );
        assert!(text.contains("10.0.0.9\ta.example\tb\n"), "{text}");
    }

    #[test]
    fn write_puts_both_files_in_the_pod_dir() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir_all(&host).unwrap();
        let hosts = HostFiles {
            resolv_conf: host.join("resolv.conf"),
            hosts: host.join("missing-hosts"),
        };
        std::fs::write(&hosts.resolv_conf, HOST).unwrap();
        let p = pod(serde_json::json!({"containers": []}));
        let files = write(&dir.path().join("pod"), &p, &[], &dns(), &hosts).unwrap();
        let resolv = std::fs::read_to_string(&files.resolv_conf).unwrap();
        assert!(resolv.contains("nameserver 10.244.3.1"));
        assert!(
            std::fs::read_to_string(&files.hosts)
                .unwrap()
                .contains("localhost")
        );
        assert_eq!(files.mounts()[1].1, "/etc/hosts");
    }
}
