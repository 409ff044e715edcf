//! What grpcurl and Kubernetes see: gRPC server reflection (v1 and v1alpha)
//! and the standard health service on dpvsd's listener, asked by real tonic
//! clients over the unix socket (the mutual TLS listener is checked in
//! `grpc_tls.rs`).

mod inproc;

use std::time::{Duration, Instant};

use inproc::Daemon;
use prost::Message as _;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// One reflection request, its one answer.
async fn try_reflect(ch: &Channel, req: MessageRequest) -> Result<MessageResponse, tonic::Status> {
    let mut c = ServerReflectionClient::new(ch.clone());
    let out = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    }]);
    let mut answers = c.server_reflection_info(out).await?.into_inner();
    Ok(answers
        .message()
        .await?
        .expect("an answer")
        .message_response
        .expect("a message"))
}

async fn reflect(ch: &Channel, req: MessageRequest) -> MessageResponse {
    try_reflect(ch, req).await.unwrap()
}

#[tokio::test]
async fn reflection_lists_the_services_and_describes_every_rpc() {
    let d = Daemon::start().await;
    let ch = d.channel().await;

    let MessageResponse::ListServicesResponse(list) =
        reflect(&ch, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    // What `grpcurl list` prints.
    assert_eq!(
        names,
        [
            "dpvs.v1.Dpvs",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ]
    );

    // `grpcurl describe dpvs.v1.Dpvs`: the file that defines it, every RPC in it.
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &ch,
        MessageRequest::FileContainingSymbol("dpvs.v1.Dpvs".into()),
    )
    .await
    else {
        panic!("not a file descriptor");
    };
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap())
        .find(|f| f.package() == "dpvs.v1")
        .expect("dpvs.proto");
    let dpvs = file
        .service
        .iter()
        .find(|s| s.name() == "Dpvs")
        .expect("service Dpvs");
    let rpcs: Vec<&str> = dpvs.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        rpcs,
        [
            "AddService",
            "EditService",
            "DeleteService",
            "ClearServices",
            "ListServices",
            "ZeroStats",
            "AddDest",
            "EditDest",
            "DeleteDest",
            "AddAddr",
            "DeleteAddr",
            "ListAddrs",
            "AddRoute",
            "DeleteRoute",
            "ListRoutes",
            "ListConnections",
            "GetStats",
            "GetTimeouts",
            "SetTimeouts",
            "AddLocalAddr",
            "DeleteLocalAddr",
            "ListLocalAddrs",
            "AddAclEntry",
            "DeleteAclEntry",
            "StartDaemon",
            "StopDaemon",
            "ListDaemons",
            "Batch",
            "ApplyConfig",
        ]
    );
    // Messages resolve too (grpcurl needs them to build a request from JSON).
    assert!(file.message_type.iter().any(|m| m.name() == "ServiceKey"));

    // An unknown symbol is NOT_FOUND naming it.
    let e = try_reflect(
        &ch,
        MessageRequest::FileContainingSymbol("dpvs.v1.Nope".into()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("dpvs.v1.Nope"), "{e:?}");

    // Older clients ask v1alpha.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut c = alpha::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let req = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = c
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("not a service list: {answer:?}");
    };
    assert!(list.service.iter().any(|s| s.name == "dpvs.v1.Dpvs"));
    d.stop().await;
}

async fn check(c: &mut HealthClient<Channel>, service: &str) -> Result<i32, tonic::Status> {
    c.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .map(|r| r.into_inner().status)
}

#[tokio::test]
async fn health_is_serving_while_dpvsd_serves_then_not_serving() {
    let d = Daemon::start().await;
    let mut c = HealthClient::new(d.channel().await);
    // "" is the whole server (what a Kubernetes probe without `service` asks).
    assert_eq!(
        check(&mut c, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        check(&mut c, "dpvs.v1.Dpvs").await.unwrap(),
        ServingStatus::Serving as i32
    );
    let e = check(&mut c, "dpvs.v9.Nope").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // A watcher sees SERVING, then NOT_SERVING when dpvsd stops.
    let mut watch = c
        .watch(HealthCheckRequest {
            service: "dpvs.v1.Dpvs".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(d.stop());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("NOT_SERVING in time")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // The watcher goes away; the server stops without waiting out its grace.
    drop(watch);
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("dpvsd stops")
        .unwrap();
    assert!(
        t.elapsed() < control::server::SHUTDOWN_GRACE,
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_stream_left_open_does_not_keep_dpvsd_from_stopping() {
    let d = Daemon::start().await;
    let mut c = HealthClient::new(d.channel().await);
    let mut watch = c
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    // The watcher never hangs up: dpvsd stops when its grace is over at the latest.
    tokio::time::timeout(
        control::server::SHUTDOWN_GRACE + Duration::from_secs(5),
        d.stop(),
    )
    .await
    .expect("dpvsd stops after its grace");
    drop(watch);
}
