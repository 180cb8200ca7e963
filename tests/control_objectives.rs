//! Applications and their management objectives (MO1-MO3, Samani & Stadler) through the config
//! and the operator API: the config's objective is in force at start, an operator replaces or
//! clears it, one that cannot hold is refused naming the field and changes nothing, and
//! `ListServices` says which application and which policy instance owns each service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use control_support::*;
use loadshift_control::config::ApplicationConfig;
use loadshift_policy::ManagementObjective;
use loadshift_proto::v1::{self as pb, management_objective::Kind};

type Operator = pb::operator_client::OperatorClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>,
>;

/// The management objective `search` reports.
async fn state(op: &mut Operator) -> Option<pb::ManagementObjective> {
    op.get_state(pb::GetStateRequest {
        service: "search".into(),
    })
    .await
    .unwrap()
    .into_inner()
    .services
    .remove(0)
    .management
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_objectives_are_typed_validated_and_per_application() {
    let token = token_file(TOKEN);
    let mut cfg = config(
        addr(0),
        &token,
        vec![
            ("front", service("even", &[(addr(1), "front-1", 1.0)])),
            (
                "search",
                service("imbres-connect", &[(addr(2), "search-1", 1.0)]),
            ),
            ("other", service("even", &[(addr(3), "other-1", 1.0)])),
        ],
    );
    cfg.applications.insert(
        "shop".into(),
        ApplicationConfig {
            services: vec!["front".into(), "search".into()],
            management: Some(ManagementObjective::Mo1 {
                bounds_ms: [("front".to_string(), 100.0)].into(),
            }),
            flows: Default::default(),
        },
    );
    let control = Control::start(cfg).await;
    let mut op = control.operator(TOKEN).await;

    let m = state(&mut op).await.expect("the config's objective");
    assert_eq!(m.kind, Kind::Mo1 as i32);
    assert_eq!(m.max_response_ms["front"], 100.0);

    // Application and policy scopes: imbres-connect plans `search` for the whole application.
    let services = op
        .list_services(pb::ListServicesRequest {})
        .await
        .unwrap()
        .into_inner()
        .services;
    let search = services.iter().find(|s| s.name == "search").unwrap();
    assert_eq!(search.application, "shop");
    assert_eq!(search.planner_scope, "application shop");
    let other = services.iter().find(|s| s.name == "other").unwrap();
    assert_eq!(other.application, "default");
    assert_eq!(other.planner_scope, "service other");

    let set = |management: pb::ManagementObjective| pb::SetObjectiveRequest {
        service: "front".into(),
        management: Some(management),
        ..Default::default()
    };
    // MO3 keeping a service from starving by favouring itself: refused, nothing changes.
    let err = op
        .set_objective(set(pb::ManagementObjective {
            kind: Kind::Mo3 as i32,
            favoured_service: "front".into(),
            protected_service: "front".into(),
            min_carried_rps: 5.0,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("management.protected"),
        "{}",
        err.message()
    );
    // A service outside the application is no bound of it.
    let err = op
        .set_objective(set(pb::ManagementObjective {
            kind: Kind::Mo1 as i32,
            max_response_ms: [("other".to_string(), 50.0)].into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("management.bounds_ms.other"),
        "{}",
        err.message()
    );
    assert_eq!(state(&mut op).await.unwrap().kind, Kind::Mo1 as i32);

    // MO2 set through one service is the application's: `search` sees it too.
    op.set_objective(set(pb::ManagementObjective {
        kind: Kind::Mo2 as i32,
        max_response_ms: [("search".to_string(), 250.0)].into(),
        utility_weight: [("search".to_string(), 5.0)].into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    let m = state(&mut op).await.unwrap();
    assert_eq!(
        (m.kind, m.utility_weight["search"]),
        (Kind::Mo2 as i32, 5.0)
    );

    op.set_objective(set(pb::ManagementObjective {
        clear: true,
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(state(&mut op).await, None);
    control.stop().await;
}
