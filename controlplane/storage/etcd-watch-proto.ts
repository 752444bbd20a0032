/**
 * The subset of etcd's v3 API (api/etcdserverpb/rpc.proto and api/mvccpb/kv.proto) that the watch
 * client uses, as proto text in a module so it travels inside the lab-server bundle. Written by
 * hand: message names, field names and field numbers follow upstream exactly (etcd 3.4+), so this
 * talks to any etcd v3 member. Fields we never send or read are left out (protobuf skips them).
 */
export const ETCD_WATCH_PROTO = `syntax = "proto3";

package etcdserverpb;

service Watch {
  rpc Watch(stream WatchRequest) returns (stream WatchResponse) {}
}

message ResponseHeader {
  uint64 cluster_id = 1;
  uint64 member_id = 2;
  int64 revision = 3;
  uint64 raft_term = 4;
}

message WatchRequest {
  oneof request_union {
    WatchCreateRequest create_request = 1;
    WatchCancelRequest cancel_request = 2;
    WatchProgressRequest progress_request = 3;
  }
}

message WatchCreateRequest {
  bytes key = 1;
  bytes range_end = 2;
  int64 start_revision = 3;
  bool progress_notify = 4;
  bool prev_kv = 6;
  int64 watch_id = 7;
  bool fragment = 8;
}

message WatchCancelRequest {
  int64 watch_id = 1;
}

message WatchProgressRequest {}

message WatchResponse {
  ResponseHeader header = 1;
  int64 watch_id = 2;
  bool created = 3;
  bool canceled = 4;
  int64 compact_revision = 5;
  string cancel_reason = 6;
  bool fragment = 7;
  repeated Event events = 11;
}

// mvccpb.KeyValue and mvccpb.Event (api/mvccpb/kv.proto), declared here: same fields, same wire format.
message KeyValue {
  bytes key = 1;
  int64 create_revision = 2;
  int64 mod_revision = 3;
  int64 version = 4;
  bytes value = 5;
  int64 lease = 6;
}

message Event {
  enum EventType {
    PUT = 0;
    DELETE = 1;
  }
  EventType type = 1;
  KeyValue kv = 2;
  KeyValue prev_kv = 3;
}
`;
