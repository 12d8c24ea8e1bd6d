//! Revocation: the fingerprint set every source is held as, the document format, the
//! config, what is learned at run time, the polled list, and publishing.

pub mod config;
pub mod doc;
pub mod etcd;
pub mod indexed;
pub mod learned;
pub mod list;
pub mod publish;
pub mod set;
