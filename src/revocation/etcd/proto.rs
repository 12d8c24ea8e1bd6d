//! etcd v3's messages for reading a prefix (`KV/Range`), watching it (`Watch/Watch`) and
//! writing under it (`KV/Txn` of puts, `Lease/LeaseGrant`) and authenticating (`Auth/
//! Authenticate`); Envoy's gRPC client frames them. The structs are the subset of etcd 3.4's `etcdserverpb/rpc.proto` and
//! `mvccpb/kv.proto` that the filter and a writer use, field numbers and types as published
//! (a field left out is skipped when decoding, so only what is sent has to be complete).

use prost::Message;

/// The largest answer read from etcd (a `Range` page, a watch message). A page of 1000
/// entries of the largest size the layout reads (4 KiB key and value) is 8 MiB; a larger
/// answer makes the reader ask for smaller pages (`PrefixWatch::range_too_large`), and a
/// watch message larger than this (etcd fragments large revisions, `fragment: true`) breaks
/// the watch, which resumes from the last revision seen.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// mvccpb.KeyValue
#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// mvccpb.Event.EventType
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    Put = 0,
    Delete = 1,
}

/// mvccpb.Event
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(enumeration = "EventType", tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
    #[prost(message, optional, tag = "3")]
    pub prev_kv: Option<KeyValue>,
}

/// etcdserverpb.ResponseHeader
#[derive(Clone, PartialEq, Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// etcdserverpb.RangeRequest.SortOrder
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SortOrder {
    None = 0,
    Ascend = 1,
    Descend = 2,
}

/// etcdserverpb.RangeRequest.SortTarget
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SortTarget {
    Key = 0,
    Version = 1,
    Create = 2,
    Mod = 3,
    Value = 4,
}

/// etcdserverpb.RangeRequest (without the min/max revision filters, 10 to 13, which nobody
/// here sends).
#[derive(Clone, PartialEq, Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
    #[prost(enumeration = "SortOrder", tag = "5")]
    pub sort_order: i32,
    #[prost(enumeration = "SortTarget", tag = "6")]
    pub sort_target: i32,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
    #[prost(bool, tag = "8")]
    pub keys_only: bool,
    #[prost(bool, tag = "9")]
    pub count_only: bool,
}

/// etcdserverpb.RangeResponse
#[derive(Clone, PartialEq, Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

/// etcdserverpb.PutRequest
#[derive(Clone, PartialEq, Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
    #[prost(bool, tag = "5")]
    pub ignore_value: bool,
    #[prost(bool, tag = "6")]
    pub ignore_lease: bool,
}

/// etcdserverpb.PutResponse
#[derive(Clone, PartialEq, Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    pub prev_kv: Option<KeyValue>,
}

/// etcdserverpb.LeaseGrantRequest (`TTL`, `ID` in the proto).
#[derive(Clone, PartialEq, Message)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    #[prost(int64, tag = "2")]
    pub id: i64,
}

/// etcdserverpb.LeaseGrantResponse (`ID`, `TTL` in the proto).
#[derive(Clone, PartialEq, Message)]
pub struct LeaseGrantResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    #[prost(string, tag = "4")]
    pub error: String,
}

/// etcdserverpb.TxnRequest: puts (`success`) applied only if every `compare` holds, so a
/// batch of entries lands whole or not at all.
#[derive(Clone, PartialEq, Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
}

/// etcdserverpb.Compare, for the one comparison written here: a key's `mod_revision`
/// (`target: MOD`, the `mod_revision` member of `target_union`).
#[derive(Clone, PartialEq, Message)]
pub struct Compare {
    #[prost(enumeration = "CompareResult", tag = "1")]
    pub result: i32,
    #[prost(enumeration = "CompareTarget", tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub mod_revision: i64,
}

/// etcdserverpb.Compare.CompareResult
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CompareResult {
    Equal = 0,
    Greater = 1,
    Less = 2,
    NotEqual = 3,
}

/// etcdserverpb.Compare.CompareTarget
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CompareTarget {
    Version = 0,
    Create = 1,
    Mod = 2,
    Value = 3,
    Lease = 4,
}

impl Compare {
    /// Holds while `key` was last changed before `revision` (a key that does not exist has
    /// `mod_revision` 0: it holds too).
    pub fn unchanged_since(key: Vec<u8>, revision: i64) -> Self {
        Compare {
            result: CompareResult::Less as i32,
            target: CompareTarget::Mod as i32,
            key,
            mod_revision: revision.saturating_add(1),
        }
    }
}

/// etcdserverpb.RequestOp, with the one operation written here (`request_put`).
#[derive(Clone, PartialEq, Message)]
pub struct RequestOp {
    #[prost(message, optional, tag = "2")]
    pub request_put: Option<PutRequest>,
}

/// etcdserverpb.TxnResponse
#[derive(Clone, PartialEq, Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

/// etcdserverpb.AuthenticateRequest
#[derive(Clone, PartialEq, Message)]
pub struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub password: String,
}

/// etcdserverpb.AuthenticateResponse: `token` goes in the `token` metadata of later calls.
#[derive(Clone, PartialEq, Message)]
pub struct AuthenticateResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    pub token: String,
}

/// etcdserverpb.WatchRequest
#[derive(Clone, PartialEq, Message)]
pub struct WatchRequest {
    #[prost(oneof = "RequestUnion", tags = "1, 2, 3")]
    pub request_union: Option<RequestUnion>,
}

/// etcdserverpb.WatchRequest.request_union
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum RequestUnion {
    #[prost(message, tag = "1")]
    CreateRequest(WatchCreateRequest),
    #[prost(message, tag = "2")]
    CancelRequest(WatchCancelRequest),
    #[prost(message, tag = "3")]
    ProgressRequest(WatchProgressRequest),
}

impl From<WatchCreateRequest> for WatchRequest {
    fn from(create: WatchCreateRequest) -> Self {
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        }
    }
}

/// etcdserverpb.WatchCreateRequest.FilterType
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FilterType {
    Noput = 0,
    Nodelete = 1,
}

/// etcdserverpb.WatchCreateRequest
#[derive(Clone, PartialEq, Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub start_revision: i64,
    #[prost(bool, tag = "4")]
    pub progress_notify: bool,
    #[prost(enumeration = "FilterType", repeated, tag = "5")]
    pub filters: Vec<i32>,
    #[prost(bool, tag = "6")]
    pub prev_kv: bool,
    #[prost(int64, tag = "7")]
    pub watch_id: i64,
    #[prost(bool, tag = "8")]
    pub fragment: bool,
}

/// etcdserverpb.WatchCancelRequest
#[derive(Clone, PartialEq, Message)]
pub struct WatchCancelRequest {
    #[prost(int64, tag = "1")]
    pub watch_id: i64,
}

/// etcdserverpb.WatchProgressRequest
#[derive(Clone, PartialEq, Message)]
pub struct WatchProgressRequest {}

/// etcdserverpb.WatchResponse
#[derive(Clone, PartialEq, Message)]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(bool, tag = "7")]
    pub fragment: bool,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

/// The `range_end` that makes a range of every key starting with `prefix` (etcd's
/// `clientv3.GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented and
/// what follows it dropped. A prefix with no such byte (empty, or all 0xff) has no end above
/// it, so the range runs from the key to the end of the keyspace: `[0]` means that to etcd.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(last) => {
            let mut end = prefix.get(..=last).unwrap_or_default().to_vec();
            if let Some(b) = end.last_mut() {
                *b += 1;
            }
            end
        }
        None => vec![0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_is_etcds() {
        assert_eq!(prefix_range_end(b"/bg/"), b"/bg0".to_vec());
        assert_eq!(prefix_range_end(b"a"), b"b".to_vec());
        assert_eq!(prefix_range_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(
            prefix_range_end(&[b'a', 0xfe, 0xff, 0xff]),
            vec![b'a', 0xff]
        );
        assert_eq!(prefix_range_end(b""), vec![0]);
        assert_eq!(prefix_range_end(&[0xff]), vec![0]);
        assert_eq!(prefix_range_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(prefix_range_end(&[0]), vec![1]);
    }

    /// Field numbers and wire types checked against bytes protoc would write for etcd's
    /// messages (tag = field << 3 | wire type).
    #[test]
    fn field_numbers_are_etcds() {
        // Compare{result LESS (1: 2), target MOD (2: 2), key (3), mod_revision (6)}.
        let compare = Compare::unchanged_since(b"k".to_vec(), 9);
        assert_eq!(
            compare.encode_to_vec(),
            vec![0x08, 2, 0x10, 2, 0x1a, 1, b'k', 0x30, 10]
        );
        let range = RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            limit: 2,
            revision: 3,
            ..Default::default()
        };
        assert_eq!(
            range.encode_to_vec(),
            vec![0x0a, 1, b'k', 0x12, 1, b'l', 0x18, 2, 0x20, 3]
        );
        let watch = WatchRequest::from(WatchCreateRequest {
            key: b"k".to_vec(),
            start_revision: 5,
            fragment: true,
            ..Default::default()
        });
        assert_eq!(
            watch.encode_to_vec(),
            vec![0x0a, 7, 0x0a, 1, b'k', 0x18, 5, 0x40, 1]
        );
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: 7,
            ..Default::default()
        };
        assert_eq!(
            put.encode_to_vec(),
            vec![0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 7]
        );
        assert_eq!(
            LeaseGrantRequest { ttl: 60, id: 0 }.encode_to_vec(),
            vec![0x08, 60]
        );
        // WatchResponse{header{revision 9}, watch_id 1, created, events[DELETE kv{key k,
        // mod_revision 9}]}: events are field 11 (0x5a), revision field 3 of the header.
        let bytes = [
            0x0a, 2, 0x18, 9, 0x10, 1, 0x18, 1, 0x5a, 9, 0x08, 1, 0x12, 5, 0x0a, 1, b'k', 0x18, 9,
        ];
        let resp = WatchResponse::decode(&bytes[..]).unwrap();
        assert_eq!(resp.header.unwrap().revision, 9);
        assert_eq!(resp.watch_id, 1);
        assert!(resp.created);
        let event = &resp.events[0];
        assert_eq!(event.r#type(), EventType::Delete);
        let kv = event.kv.as_ref().unwrap();
        assert_eq!((kv.key.as_slice(), kv.mod_revision), (&b"k"[..], 9));
        // RangeResponse{header{revision 4}, kvs[{key k, value v}], more, count 2}
        let bytes = [
            0x0a, 2, 0x18, 4, 0x12, 6, 0x0a, 1, b'k', 0x2a, 1, b'v', 0x18, 1, 0x20, 2,
        ];
        let resp = RangeResponse::decode(&bytes[..]).unwrap();
        assert_eq!(resp.header.unwrap().revision, 4);
        assert_eq!(resp.kvs[0].value, b"v".to_vec());
        assert!(resp.more);
        assert_eq!(resp.count, 2);
        let bytes = [0x0a, 2, 0x18, 4, 0x10, 42, 0x18, 60];
        let grant = LeaseGrantResponse::decode(&bytes[..]).unwrap();
        assert_eq!((grant.id, grant.ttl), (42, 60));
    }

    #[test]
    fn garbage_bodies_are_decode_errors_not_panics() {
        for bytes in [
            &[0xff_u8, 0xff, 0xff][..],
            &[0x0a, 0x7f],
            &[0x5a, 0x03, 0x08, 0x80],
            &[
                0x28, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
        ] {
            assert!(WatchResponse::decode(bytes).is_err(), "{bytes:?}");
        }
        // An unknown event type decodes; its accessor falls back to PUT, so callers check
        // `EventType::try_from` themselves.
        let event = Event::decode(&[0x08, 9][..]).unwrap();
        assert!(EventType::try_from(event.r#type).is_err());
    }
}
