//! The cluster's PKI, generated fresh per cluster with rcgen: the same set of CAs, serving and
//! client certificates a kubeadm cluster has, so components authenticate as they do in one.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// The ClusterIP of the `kubernetes` Service (first address of the service range).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/12";
const KUBERNETES_SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));

/// CN of the client certificate the apiserver presents to kubelets (and to the daemon).
pub const APISERVER_KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// Paths of the generated files, all inside `<cluster dir>/pki`.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub dir: PathBuf,
}

macro_rules! pki_file {
    ($($fn:ident => $name:literal),* $(,)?) => {
        impl PkiFiles {
            $(pub fn $fn(&self) -> PathBuf { self.dir.join($name) })*
        }
    };
}

pki_file! {
    ca_crt => "ca.crt", ca_key => "ca.key",
    apiserver_crt => "apiserver.crt", apiserver_key => "apiserver.key",
    sa_key => "sa.key", sa_pub => "sa.pub",
    front_proxy_ca_crt => "front-proxy-ca.crt",
    front_proxy_client_crt => "front-proxy-client.crt", front_proxy_client_key => "front-proxy-client.key",
    admin_crt => "admin.crt", admin_key => "admin.key",
    controller_manager_crt => "controller-manager.crt", controller_manager_key => "controller-manager.key",
    scheduler_crt => "scheduler.crt", scheduler_key => "scheduler.key",
    kubelet_client_ca_crt => "kubelet-client-ca.crt",
    apiserver_kubelet_client_crt => "apiserver-kubelet-client.crt",
    apiserver_kubelet_client_key => "apiserver-kubelet-client.key",
    metrics_server_crt => "metrics-server.crt", metrics_server_key => "metrics-server.key",
}

fn pki_err(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |source| Error::Pki {
        what: what.to_string(),
        source,
    }
}

fn params(cn: &str, orgs: &[&str], sans: Vec<String>) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans).map_err(pki_err(cn))?;
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    // Some slack for clock differences; a test cluster lives far less than a year.
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    Ok(p)
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

fn new_ca(cn: &str) -> Result<Ca> {
    let mut p = params(cn, &[], vec![])?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(pki_err(cn))?;
    let cert = p.self_signed(&key).map_err(pki_err(cn))?;
    Ok(Ca {
        cert_pem: cert.pem(),
        issuer: Issuer::new(p, key),
    })
}

/// Issues a leaf certificate; returns (cert PEM, key PEM).
fn leaf(
    ca: &Ca,
    cn: &str,
    orgs: &[&str],
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String)> {
    let mut p = params(cn, orgs, sans)?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(pki_err(cn))?;
    let cert = p.signed_by(&key, &ca.issuer).map_err(pki_err(cn))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(Error::io("writing", &path))?;
    if name.ends_with(".key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("restricting", &path))?;
    }
    Ok(())
}

/// Generates the whole PKI into `dir`. `extra_ips` are added to the apiserver's serving
/// certificate (the network-namespace address in `--netns` mode).
/// `kubeadm_kubelet_client` signs the apiserver's kubelet client certificate with the cluster
/// CA, as kubeadm does, instead of a CA of its own.
pub fn generate(
    dir: &Path,
    extra_ips: &[IpAddr],
    kubeadm_kubelet_client: bool,
) -> Result<PkiFiles> {
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    let server = ExtendedKeyUsagePurpose::ServerAuth;

    let ca = new_ca("kubernetes")?;
    write(dir, "ca.crt", &ca.cert_pem)?;
    write(dir, "ca.key", &ca.issuer.key().serialize_pem())?;

    let mut sans: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .into();
    sans.push(Ipv4Addr::LOCALHOST.to_string());
    sans.push(KUBERNETES_SERVICE_IP.to_string());
    sans.extend(extra_ips.iter().map(IpAddr::to_string));
    let (c, k) = leaf(&ca, "kube-apiserver", &[], sans, server.clone())?;
    write(dir, "apiserver.crt", &c)?;
    write(dir, "apiserver.key", &k)?;

    let sa = KeyPair::generate().map_err(pki_err("service-account key"))?;
    write(dir, "sa.key", &sa.serialize_pem())?;
    write(dir, "sa.pub", &sa.public_key_pem())?;

    for (file, cn, orgs) in [
        ("admin", "kubernetes-admin", &["system:masters"][..]),
        (
            "controller-manager",
            "system:kube-controller-manager",
            &[][..],
        ),
        ("scheduler", "system:kube-scheduler", &[][..]),
    ] {
        let (c, k) = leaf(&ca, cn, orgs, vec![], client.clone())?;
        write(dir, &format!("{file}.crt"), &c)?;
        write(dir, &format!("{file}.key"), &k)?;
    }

    // metrics-server's serving certificate, valid for its Service name.
    let ms_sans = ["metrics-server.kube-system.svc", "localhost"]
        .map(String::from)
        .into_iter()
        .chain(std::iter::once(Ipv4Addr::LOCALHOST.to_string()))
        .chain(extra_ips.iter().map(IpAddr::to_string))
        .collect();
    let (c, k) = leaf(&ca, "metrics-server", &[], ms_sans, server)?;
    write(dir, "metrics-server.crt", &c)?;
    write(dir, "metrics-server.key", &k)?;

    // Aggregation: the apiserver proves it is the front proxy with this client certificate.
    let fp = new_ca("front-proxy-ca")?;
    write(dir, "front-proxy-ca.crt", &fp.cert_pem)?;
    let (c, k) = leaf(&fp, "front-proxy-client", &[], vec![], client.clone())?;
    write(dir, "front-proxy-client.crt", &c)?;
    write(dir, "front-proxy-client.key", &k)?;

    // A CA of its own for the apiserver's kubelet client certificate, so the daemon's
    // --client-ca-file trusts that one identity and not every client of the cluster CA.
    let own = new_ca("kubelet-client-ca")?;
    let kc = if kubeadm_kubelet_client { &ca } else { &own };
    write(dir, "kubelet-client-ca.crt", &kc.cert_pem)?;
    let (c, k) = leaf(
        kc,
        APISERVER_KUBELET_CLIENT_CN,
        &["system:masters"],
        vec![],
        client,
    )?;
    write(dir, "apiserver-kubelet-client.crt", &c)?;
    write(dir, "apiserver-kubelet-client.key", &k)?;

    Ok(PkiFiles {
        dir: dir.to_path_buf(),
    })
}

impl PkiFiles {
    /// A serving certificate signed by the cluster CA (what an issuer such as cert-manager's
    /// CA issuer would hand out); returns (cert PEM, key PEM).
    pub fn issue_serving_cert(&self, cn: &str, sans: Vec<String>) -> Result<(String, String)> {
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(Error::io("reading", &p));
        let key =
            KeyPair::from_pem(&read(self.ca_key())?).map_err(pki_err("the cluster CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&read(self.ca_crt())?, key)
            .map_err(pki_err("the cluster CA certificate"))?;
        let cert_pem = read(self.ca_crt())?;
        leaf(
            &Ca { issuer, cert_pem },
            cn,
            &[],
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}
