//! Generated gRPC code: the control-plane protocol (`control.proto`) and the
//! subset of etcd's API the etcd store speaks (`etcd/`).

/// meshgate's control-plane protocol, version 1.
pub mod v1 {
    tonic::include_proto!("meshgate.control.v1");
}

/// The control-plane servers again, sending snapshots encoded once
/// ([`crate::snapshot::EncodedSnapshot`]); see build.rs.
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/wire/meshgate.control.v1.rs"));
}

/// etcd's v3 API (the part meshgate uses).
pub mod etcd {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
