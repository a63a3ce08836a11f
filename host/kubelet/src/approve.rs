//! `--approve-own-serving-csr`: the daemon approves its own `kubernetes.io/kubelet-serving`
//! CSR, and nothing else. Before approving, [`check_own_csr`] makes sure the CSR is exactly
//! the one this process filed: signer, requester (this process's identity, from a
//! SelfSubjectReview), subject `CN=system:node:<node>, O=system:nodes`, SANs equal to the
//! configured addresses, the usages requested, and the public key of the key this process
//! holds. The approval goes through the `approval` subresource with an `Approved` condition.
//!
//! RBAC it needs on top of the CSR rules (create, get, watch): `update` on
//! `certificatesigningrequests/approval`, and `approve` on `signers` named
//! `kubernetes.io/kubelet-serving` (both in `certificates.k8s.io`).

use std::net::IpAddr;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::OnceCell;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::bootstrap::{SIGNER, USAGES};

/// What this daemon's own serving CSR looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCsr {
    pub node_name: String,
    pub ips: Vec<IpAddr>,
    pub dns_names: Vec<String>,
    /// This process's user name (`spec.username` of the CSRs it creates).
    pub username: String,
    /// The DER SubjectPublicKeyInfo of the key this process holds for the CSR.
    pub public_key: Vec<u8>,
}

/// Why a CSR is not approved as this daemon's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOwnCsr {
    #[error("its signer is {0:?}, not {SIGNER}")]
    Signer(String),
    #[error("it was filed by {found:?}, not by this daemon ({expected:?})")]
    Requester { found: String, expected: String },
    #[error("its request is not a readable PEM CERTIFICATE REQUEST: {0}")]
    Unreadable(String),
    #[error("its subject is {found:?}, not \"CN=system:node:{node}, O=system:nodes\"")]
    Subject { found: String, node: String },
    #[error("it asks for names {found:?}, not exactly the configured {expected:?}")]
    Names {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("it asks for usages {found:?}, not {expected:?}")]
    Usages {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("its public key is not the one this process generated")]
    Key,
    #[error("it is already {0}")]
    Decided(String),
}

/// Whether `csr` is exactly this daemon's own serving CSR.
pub fn check_own_csr(csr: &CertificateSigningRequest, own: &OwnCsr) -> Result<(), NotOwnCsr> {
    let spec = &csr.spec;
    if spec.signer_name != SIGNER {
        return Err(NotOwnCsr::Signer(spec.signer_name.clone()));
    }
    let requester = spec.username.clone().unwrap_or_default();
    if requester != own.username {
        return Err(NotOwnCsr::Requester {
            found: requester,
            expected: own.username.clone(),
        });
    }
    if let Some(c) = csr
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.status == "True")
    {
        return Err(NotOwnCsr::Decided(c.type_.to_lowercase()));
    }
    let mut usages: Vec<String> = spec.usages.clone().unwrap_or_default();
    usages.sort();
    let mut want: Vec<String> = USAGES.iter().map(|u| u.to_string()).collect();
    want.sort();
    if usages != want {
        return Err(NotOwnCsr::Usages {
            found: usages,
            expected: want,
        });
    }
    let unreadable = |m: String| NotOwnCsr::Unreadable(m);
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&spec.request.0).map_err(|e| unreadable(e.to_string()))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(unreadable(format!("a PEM {:?} block", pem.label)));
    }
    let (_, req) =
        X509CertificationRequest::from_der(&pem.contents).map_err(|e| unreadable(e.to_string()))?;
    let info = &req.certification_request_info;

    let subject = &info.subject;
    let cns: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let attributes = subject.iter_attributes().count();
    let cn = format!("system:node:{}", own.node_name);
    if cns != [cn.as_str()] || orgs != ["system:nodes"] || attributes != 2 {
        return Err(NotOwnCsr::Subject {
            found: subject.to_string(),
            node: own.node_name.clone(),
        });
    }

    let mut names = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                names.push(match n {
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
                        Ok(v4) => format!("IP:{}", IpAddr::from(v4)),
                        Err(_) => match <[u8; 16]>::try_from(*b) {
                            Ok(v6) => format!("IP:{}", IpAddr::from(v6)),
                            Err(_) => format!("IP:{b:02x?}"),
                        },
                    },
                    other => format!("{other}"),
                });
            }
        }
    }
    names.sort();
    let mut expected: Vec<String> = own
        .ips
        .iter()
        .map(|ip| format!("IP:{ip}"))
        .chain(own.dns_names.iter().map(|d| format!("DNS:{d}")))
        .collect();
    expected.sort();
    expected.dedup();
    if names != expected {
        return Err(NotOwnCsr::Names {
            found: names,
            expected,
        });
    }

    if info.subject_pki.raw != own.public_key.as_slice() {
        return Err(NotOwnCsr::Key);
    }
    Ok(())
}

/// Why the daemon could not approve its own CSR.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error(
        "cannot learn this process's identity (SelfSubjectReview, authentication.k8s.io/v1): {0}"
    )]
    WhoAmI(String),
    #[error("not approving CertificateSigningRequest {csr}: {reason}")]
    NotOwn { csr: String, reason: NotOwnCsr },
    #[error(
        "cannot approve CertificateSigningRequest {csr}: {message}; --approve-own-serving-csr needs `update` on certificatesigningrequests/approval and `approve` on signers named kubernetes.io/kubelet-serving"
    )]
    Api { csr: String, message: String },
}

/// Approves this daemon's own serving CSRs.
pub(crate) struct SelfApprover {
    client: kube::Client,
    node_name: String,
    ips: Vec<IpAddr>,
    dns_names: Vec<String>,
    username: OnceCell<String>,
}

impl SelfApprover {
    pub fn new(client: kube::Client, node_name: &str, ips: &[IpAddr], dns: &[String]) -> Self {
        Self {
            client,
            node_name: node_name.to_owned(),
            ips: ips.to_vec(),
            dns_names: dns.to_vec(),
            username: OnceCell::new(),
        }
    }

    async fn whoami(&self) -> Result<&str, ApproveError> {
        self.username
            .get_or_try_init(|| async {
                let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
                let review = api
                    .create(&PostParams::default(), &SelfSubjectReview::default())
                    .await
                    .map_err(|e| ApproveError::WhoAmI(e.to_string()))?;
                review
                    .status
                    .and_then(|s| s.user_info)
                    .and_then(|u| u.username)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| ApproveError::WhoAmI("the review names no user".into()))
            })
            .await
            .map(String::as_str)
    }

    /// Checks `csr` (as just created) and approves it; `public_key` is the SPKI of the key
    /// this process generated for it.
    pub async fn approve(
        &self,
        csr: &CertificateSigningRequest,
        public_key: &[u8],
    ) -> Result<(), ApproveError> {
        let name = csr.metadata.name.clone().unwrap_or_default();
        let own = OwnCsr {
            node_name: self.node_name.clone(),
            ips: self.ips.clone(),
            dns_names: self.dns_names.clone(),
            username: self.whoami().await?.to_owned(),
            public_key: public_key.to_vec(),
        };
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let mut current = csr.clone();
        for _ in 0..3 {
            check_own_csr(&current, &own).map_err(|reason| ApproveError::NotOwn {
                csr: name.clone(),
                reason,
            })?;
            let mut approved = current.clone();
            approved
                .status
                .get_or_insert_with(CertificateSigningRequestStatus::default)
                .conditions
                .get_or_insert_with(Vec::new)
                .push(CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("SelfApprovedByVkStackpath".into()),
                    message: Some(format!(
                        "approved by vk-stackpath (--approve-own-serving-csr) as the serving certificate of its own node {}: signer, requester, subject, names, usages and key checked",
                        self.node_name
                    )),
                    last_update_time: Some(Time(Timestamp::now())),
                    ..Default::default()
                });
            match api
                .replace_subresource("approval", &name, &PostParams::default(), &approved)
                .await
            {
                Ok(_) => return Ok(()),
                // Changed meanwhile (the signer, another approver): look again.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    current = api.get(&name).await.map_err(|e| ApproveError::Api {
                        csr: name.clone(),
                        message: e.to_string(),
                    })?;
                }
                Err(e) => {
                    return Err(ApproveError::Api {
                        csr: name,
                        message: e.to_string(),
                    });
                }
            }
        }
        Err(ApproveError::Api {
            csr: name,
            message: "it kept changing while being approved".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::build_request;
    use crate::config::CsrBootstrap;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

    const ME: &str = "system:serviceaccount:vk-stackpath:vk-stackpath";

    fn cfg() -> CsrBootstrap {
        CsrBootstrap {
            ips: vec!["10.0.0.7".parse().unwrap()],
            dns_names: vec!["vk-node".into()],
            ..Default::default()
        }
    }

    /// A CSR as the daemon files it for `node` with `cfg`, and the expectation of node
    /// `vk-node` with the default configuration.
    fn filed(node: &str, cfg: &CsrBootstrap) -> (CertificateSigningRequest, OwnCsr) {
        let (key, pem) = build_request(node, cfg).unwrap();
        let csr = CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: SIGNER.into(),
                usages: Some(USAGES.iter().map(|u| u.to_string()).collect()),
                username: Some(ME.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = self::cfg();
        let own = OwnCsr {
            node_name: "vk-node".into(),
            ips: c.ips,
            dns_names: c.dns_names,
            username: ME.into(),
            public_key: rcgen::PublicKeyData::subject_public_key_info(&key),
        };
        (csr, own)
    }

    #[test]
    fn its_own_csr_passes() {
        let (csr, own) = filed("vk-node", &cfg());
        assert_eq!(check_own_csr(&csr, &own), Ok(()));
    }

    #[test]
    fn a_foreign_requester_is_refused() {
        let (mut csr, own) = filed("vk-node", &cfg());
        csr.spec.username = Some("system:serviceaccount:default:intruder".into());
        assert!(matches!(
            check_own_csr(&csr, &own),
            Err(NotOwnCsr::Requester { .. })
        ));
    }

    #[test]
    fn a_foreign_node_name_is_refused() {
        let (csr, own) = filed("other-node", &cfg());
        let e = check_own_csr(&csr, &own).unwrap_err();
        assert!(matches!(e, NotOwnCsr::Subject { .. }), "{e}");
        assert!(e.to_string().contains("system:node:other-node"), "{e}");
    }

    #[test]
    fn a_foreign_san_is_refused() {
        let mut c = cfg();
        c.dns_names.push("bank.example.com".into());
        let (csr, own) = filed("vk-node", &c);
        let e = check_own_csr(&csr, &own).unwrap_err();
        assert!(e.to_string().contains("DNS:bank.example.com"), "{e}");
        let mut c = cfg();
        c.ips = vec!["10.0.0.8".parse().unwrap()];
        let (csr, own) = filed("vk-node", &c);
        assert!(matches!(
            check_own_csr(&csr, &own),
            Err(NotOwnCsr::Names { .. })
        ));
    }

    #[test]
    fn another_signer_usage_or_key_is_refused() {
        let (mut csr, own) = filed("vk-node", &cfg());
        csr.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
        assert!(matches!(
            check_own_csr(&csr, &own),
            Err(NotOwnCsr::Signer(_))
        ));

        let (mut csr, own) = filed("vk-node", &cfg());
        csr.spec.usages = Some(vec!["digital signature".into(), "client auth".into()]);
        assert!(matches!(
            check_own_csr(&csr, &own),
            Err(NotOwnCsr::Usages { .. })
        ));

        // The same request made with a key this process does not hold.
        let (csr, _) = filed("vk-node", &cfg());
        let (_, own) = filed("vk-node", &cfg());
        assert_eq!(check_own_csr(&csr, &own), Err(NotOwnCsr::Key));

        let (mut csr, own) = filed("vk-node", &cfg());
        csr.spec.request =
            ByteString(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec());
        assert!(matches!(
            check_own_csr(&csr, &own),
            Err(NotOwnCsr::Unreadable(_))
        ));
    }

    #[test]
    fn a_decided_csr_is_left_alone() {
        let (mut csr, own) = filed("vk-node", &cfg());
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            check_own_csr(&csr, &own),
            Err(NotOwnCsr::Decided("denied".into()))
        );
    }
}
