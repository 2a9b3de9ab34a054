//! meshgate's service mesh (east-west): workload identities (SPIFFE X.509-SVIDs)
//! issued by the control plane's CA and rotated at half-life, the sidecar that
//! puts them to work (inbound mTLS termination, outbound mTLS origination), and
//! transparent interception of an unmodified application's traffic.

pub mod ca;
pub mod identity_client;
pub mod ingress;
pub mod intercept;
pub mod sidecar;
