//! Services: register and read back, list, patch each field, delete and reuse a slug, slug
//! conflicts, tenant isolation, exact prices and upstreams, and whether tool errors are charged.

use std::collections::BTreeMap;

use prom_core::audit::{AuditAction, AuditTarget};
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, Upstream};
use prom_core::store::{AuditStore, ServicePatch, ServiceStore, StoreError};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{actions, by_action, everything, new_service, owner_of, prices, service_slug, shift};

const RACERS: i64 = 12;

async fn created_service_reads_back_the_same_everywhere(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let now = Timestamp::now();
    let new = new_service(&owner, "weather-pro", now);
    let id = new.id.clone();
    let record = store.create_service(new, &owner.ctx()).await.unwrap();

    assert_eq!(record.id, id);
    assert_eq!(record.tenant_id, owner.tenant.id);
    assert_eq!(record.slug.as_str(), "weather-pro");
    assert_eq!(record.name, "weather-pro service");
    assert_eq!(record.description, "What weather-pro does.");
    assert_eq!(record.upstream, Upstream::Http { url: "https://weather-pro.example/mcp".into() });
    assert_eq!(record.prices, prices(&[("search", 250)]));
    assert_eq!(record.price_of("search"), Amount::new(250));
    assert_eq!(record.price_of("unpriced"), Amount::ZERO);
    assert_eq!((record.created_at, record.updated_at), (now, now));

    assert_eq!(store.get_service(&record.slug).await.unwrap(), Some(record.clone()));
    assert_eq!(store.get_service(&service_slug("nothing-here")).await.unwrap(), None);
    assert_eq!(store.list_services().await.unwrap(), vec![record.clone()]);

    let events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ServiceCreate)).await.unwrap();
    assert_eq!(actions(&events), ["service.create"]);
    assert_eq!(events[0].at, now);
    assert_eq!(events[0].target, Some(AuditTarget::service("weather-pro", "weather-pro service")));
    assert_eq!(events[0].actor.id.as_deref(), Some(owner.user.id.as_str()));
    assert_eq!(
        events[0].details,
        json!({ "upstream": "http", "prices": { "search": "250" }, "charge_tool_errors": false })
    );
}

async fn list_is_by_slug_across_tenants_and_skips_deleted(store: SqlStore) {
    let alice = owner_of(&store, "alice-co").await;
    let bob = owner_of(&store, "bob-co").await;
    let t0 = Timestamp::now();
    for (owner, slug) in [(&alice, "zebra"), (&bob, "alpha"), (&alice, "middle"), (&bob, "gone")] {
        store.create_service(new_service(owner, slug, t0), &owner.ctx()).await.unwrap();
    }
    store.delete_service(bob.tenant_id(), &service_slug("gone"), shift(t0, 1), &bob.ctx()).await.unwrap();

    let listed = store.list_services().await.unwrap();
    let slugs: Vec<_> = listed.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(slugs, ["alpha", "middle", "zebra"], "every tenant's live services, by slug");
    let publishers: Vec<_> = listed.iter().map(|s| &s.tenant_id).collect();
    assert_eq!(publishers, [bob.tenant_id(), alice.tenant_id(), alice.tenant_id()]);
}

async fn update_patches_each_field_alone(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let original = store.create_service(new_service(&owner, "weather", t0), &owner.ctx()).await.unwrap();
    let slug = original.slug.clone();
    let stdio = Upstream::Stdio {
        command: "demo-mcp".into(),
        args: vec!["--stdio".into()],
        env: BTreeMap::from([("DEMO_TOKEN".into(), "s3cret".into())]),
    };
    let new_prices = prices(&[("search", 300), ("forecast", 1)]);

    let patches = [
        (ServicePatch { name: Some("Weather Pro".into()), ..ServicePatch::default() }, "name"),
        (ServicePatch { description: Some("Forecasts.".into()), ..ServicePatch::default() }, "description"),
        (ServicePatch { upstream: Some(stdio.clone()), ..ServicePatch::default() }, "upstream"),
        (ServicePatch { prices: Some(new_prices.clone()), ..ServicePatch::default() }, "prices"),
    ];
    let mut expected = original.clone();
    for (step, (patch, field)) in (1..).zip(patches) {
        let at = shift(t0, step * 1_000);
        match field {
            "name" => expected.name = "Weather Pro".into(),
            "description" => expected.description = "Forecasts.".into(),
            "upstream" => expected.upstream = stdio.clone(),
            _ => expected.prices = new_prices.clone(),
        }
        expected.updated_at = at;
        let updated = store.update_service(owner.tenant_id(), &slug, patch, at, &owner.ctx()).await.unwrap();
        assert_eq!(updated, expected, "patching {field} changes {field} and updated_at only");
        assert_eq!(store.get_service(&slug).await.unwrap(), Some(expected.clone()));
    }
    assert_eq!(expected.created_at, t0);

    let events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ServiceUpdate)).await.unwrap();
    let changed: Vec<_> = events.iter().map(|e| e.details["changed"].clone()).collect();
    assert_eq!(changed, [json!(["prices"]), json!(["upstream"]), json!(["description"]), json!(["name"])]);
    assert_eq!(events[0].target, Some(AuditTarget::service("weather", "Weather Pro")));
    assert_eq!(
        events[0].details["prices"],
        json!({ "before": { "search": "250" }, "after": { "forecast": "1", "search": "300" } })
    );
    assert_eq!(events[1].details["upstream"], json!("stdio"));
    let logged = format!("{:?}", store.list_audit(owner.tenant_id(), &everything()).await.unwrap());
    assert!(!logged.contains("s3cret"), "upstream secrets must stay out of the audit log: {logged}");
    assert!(!logged.contains("weather.example"), "upstream URLs must stay out of the audit log: {logged}");
}

async fn patch_that_changes_nothing_writes_nothing(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let original = store.create_service(new_service(&owner, "weather", t0), &owner.ctx()).await.unwrap();
    let later = shift(t0, 1_000);

    let (tenant, ctx) = (owner.tenant_id(), owner.ctx());
    let empty = store.update_service(tenant, &original.slug, ServicePatch::default(), later, &ctx).await.unwrap();
    assert_eq!(empty, original);
    let same = ServicePatch {
        name: Some(original.name.clone()),
        prices: Some(original.prices.clone()),
        ..ServicePatch::default()
    };
    let same = store.update_service(tenant, &original.slug, same, later, &ctx).await.unwrap();
    assert_eq!(same, original, "updated_at stays when nothing changed");
    assert_eq!(store.get_service(&original.slug).await.unwrap(), Some(original.clone()));

    let events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ServiceUpdate)).await.unwrap();
    assert!(events.is_empty(), "{events:?}");
}

async fn delete_hides_the_service_and_frees_its_slug(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let first = store.create_service(new_service(&owner, "weather", t0), &owner.ctx()).await.unwrap();
    let deleted_at = shift(t0, 1_000);

    let deleted = store.delete_service(owner.tenant_id(), &first.slug, deleted_at, &owner.ctx()).await.unwrap();
    assert_eq!(deleted, first);
    assert_eq!(store.get_service(&first.slug).await.unwrap(), None);
    assert!(store.list_services().await.unwrap().is_empty());

    let later = shift(t0, 2_000);
    let again = store.delete_service(owner.tenant_id(), &first.slug, later, &owner.ctx()).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    let patch = ServicePatch { name: Some("Ghost".into()), ..ServicePatch::default() };
    let update = store.update_service(owner.tenant_id(), &first.slug, patch, later, &owner.ctx()).await;
    assert!(matches!(update, Err(StoreError::NotFound)), "{update:?}");

    let mut second = new_service(&owner, "weather", later);
    second.prices = prices(&[("search", 999)]);
    let second = store.create_service(second, &owner.ctx()).await.expect("a deleted service's slug is free again");
    assert_ne!(second.id, first.id);
    assert_eq!(store.get_service(&first.slug).await.unwrap(), Some(second.clone()));
    assert_eq!(store.list_services().await.unwrap(), vec![second]);

    let events = store.list_audit(owner.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&events), ["service.create", "service.delete", "service.create", "member.add"]);
    assert_eq!(events[1].at, deleted_at);
    assert_eq!(events[1].target, Some(AuditTarget::service("weather", "weather service")));
    assert_eq!(events[1].details, json!({ "upstream": "http", "prices": { "search": "250" } }));
}

async fn taken_slug_is_a_conflict(store: SqlStore) {
    let alice = owner_of(&store, "alice-co").await;
    let bob = owner_of(&store, "bob-co").await;
    let t0 = Timestamp::now();
    let first = store.create_service(new_service(&alice, "weather", t0), &alice.ctx()).await.unwrap();

    for owner in [&alice, &bob] {
        let result = store.create_service(new_service(owner, "weather", shift(t0, 1)), &owner.ctx()).await;
        let message = match result {
            Err(StoreError::Conflict(message)) => message,
            other => format!("not a conflict: {other:?}"),
        };
        assert!(message.starts_with("the slug weather is taken"), "{message}");
    }
    assert_eq!(store.list_services().await.unwrap(), vec![first]);
    let bob_events = store.list_audit(bob.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&bob_events), ["member.add"], "the refused service's audit row rolls back with it");
    let alice_events = store.list_audit(alice.tenant_id(), &by_action(AuditAction::ServiceCreate)).await.unwrap();
    assert_eq!(alice_events.len(), 1);
}

async fn concurrent_registrations_of_one_slug_have_one_winner(store: SqlStore) {
    let owners = [owner_of(&store, "alice-co").await, owner_of(&store, "bob-co").await];
    let t0 = Timestamp::now();
    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let owner = &owners[usize::from(n % 2 == 0)];
        let (store, service, ctx) = (store.clone(), new_service(owner, "contested", shift(t0, n)), owner.ctx());
        racers.spawn(async move { store.create_service(service, &ctx).await });
    }
    let results = racers.join_all().await;

    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict(_)))), "{results:?}");
    assert_eq!(store.list_services().await.unwrap().len(), 1);
}

async fn concurrent_price_changes_each_see_the_one_before(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let service = store.create_service(new_service(&owner, "weather", t0), &owner.ctx()).await.unwrap();

    let mut racers = JoinSet::new();
    for n in 1..=RACERS {
        let (store, tenant, slug, ctx) = (store.clone(), owner.tenant.id.clone(), service.slug.clone(), owner.ctx());
        let patch =
            ServicePatch { prices: Some(prices(&[("search", n.unsigned_abs().into())])), ..ServicePatch::default() };
        racers.spawn(async move { store.update_service(&tenant, &slug, patch, shift(t0, n), &ctx).await });
    }
    for result in racers.join_all().await {
        result.unwrap();
    }

    // The log must be one chain 250 -> a -> b -> …: two updates that read the same "before"
    // would mean one of them overwrote a change it never saw.
    // The log lists events by their (racing) times; the chain is in the order they were written.
    let mut events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ServiceUpdate)).await.unwrap();
    assert_eq!(events.len(), RACERS as usize);
    events.sort_by_key(|event| event.id);
    let mut expected_before = json!({ "search": "250" });
    for event in &events {
        assert_eq!(event.details["prices"]["before"], expected_before, "{events:?}");
        expected_before = event.details["prices"]["after"].clone();
    }
    let current = store.get_service(&service.slug).await.unwrap().unwrap();
    assert_eq!(json!(current.prices), expected_before);
}

async fn other_tenant_cannot_update_or_delete(store: SqlStore) {
    let alice = owner_of(&store, "alice-co").await;
    let bob = owner_of(&store, "bob-co").await;
    let t0 = Timestamp::now();
    let service = store.create_service(new_service(&alice, "weather", t0), &alice.ctx()).await.unwrap();
    let at = shift(t0, 1_000);

    let patch = ServicePatch { prices: Some(prices(&[("search", 1_000_000)])), ..ServicePatch::default() };
    let update = store.update_service(bob.tenant_id(), &service.slug, patch, at, &bob.ctx()).await;
    assert!(matches!(update, Err(StoreError::NotFound)), "{update:?}");
    let delete = store.delete_service(bob.tenant_id(), &service.slug, at, &bob.ctx()).await;
    assert!(matches!(delete, Err(StoreError::NotFound)), "{delete:?}");

    assert_eq!(store.get_service(&service.slug).await.unwrap(), Some(service.clone()), "alice's service is untouched");
    let alice_events = store.list_audit(alice.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&alice_events), ["service.create", "member.add"], "bob's attempts left no trace");
    let bob_events = store.list_audit(bob.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&bob_events), ["member.add"]);
}

async fn prices_round_trip_exactly(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let exact = prices(&[
        ("max", u128::MAX),
        ("past-f64", (1 << 53) + 1),
        ("past-i64", u128::from(u64::MAX) + 1),
        ("free", 0),
        ("one", 1),
        ("météo ☀", 42),
    ]);
    let mut service = new_service(&owner, "exact", t0);
    service.prices = exact.clone();
    store.create_service(service, &owner.ctx()).await.unwrap();
    let read = store.get_service(&service_slug("exact")).await.unwrap().unwrap();
    assert_eq!(read.prices, exact);
    assert_eq!(read.price_of("max"), Amount::new(u128::MAX));

    let mut none = new_service(&owner, "no-prices", t0);
    none.prices.clear();
    store.create_service(none, &owner.ctx()).await.unwrap();
    assert!(store.get_service(&service_slug("no-prices")).await.unwrap().unwrap().prices.is_empty());

    let patch = ServicePatch { prices: Some(prices(&[("max", u128::MAX - 1)])), ..ServicePatch::default() };
    store.update_service(owner.tenant_id(), &service_slug("exact"), patch, shift(t0, 1), &owner.ctx()).await.unwrap();
    let read = store.get_service(&service_slug("exact")).await.unwrap().unwrap();
    assert_eq!(read.prices, prices(&[("max", u128::MAX - 1)]), "prices are replaced as a whole");
}

async fn upstreams_round_trip(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let upstreams = [
        Upstream::Http { url: "http://127.0.0.1:9000/mcp?token=a%20b&x=\"y\"".into() },
        Upstream::Stdio { command: "demo-mcp".into(), args: Vec::new(), env: BTreeMap::new() },
        Upstream::Stdio {
            command: "/usr/local/bin/weather mcp".into(),
            args: vec!["--stdio".into(), String::new(), "--name=a b".into()],
            env: BTreeMap::from([("API_KEY".into(), "k=v;\"quoted\"".into()), ("EMPTY".into(), String::new())]),
        },
    ];
    for (i, upstream) in upstreams.into_iter().enumerate() {
        let slug = format!("upstream-{i}");
        let mut service = new_service(&owner, &slug, t0);
        service.upstream = upstream.clone();
        store.create_service(service, &owner.ctx()).await.unwrap();
        let read: ServiceRecord = store.get_service(&service_slug(&slug)).await.unwrap().unwrap();
        assert_eq!(read.upstream, upstream);
    }
}

async fn charge_tool_errors_is_stored_patched_and_read_back(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let (tenant, ctx) = (owner.tenant_id(), owner.ctx());
    let t0 = Timestamp::now();
    let plain = store.create_service(new_service(&owner, "plain", t0), &ctx).await.unwrap();
    assert!(!plain.charge_tool_errors);
    let mut charging = new_service(&owner, "charging", t0);
    charging.charge_tool_errors = true;
    let charging = store.create_service(charging, &ctx).await.unwrap();
    assert!(charging.charge_tool_errors);
    assert_eq!(store.get_service(&charging.slug).await.unwrap(), Some(charging.clone()));
    assert_eq!(store.get_service(&plain.slug).await.unwrap(), Some(plain.clone()));
    assert_eq!(store.list_services().await.unwrap(), vec![charging.clone(), plain.clone()]);

    // Off, then off again (no change: nothing written), then on for the other service.
    let off = || ServicePatch { charge_tool_errors: Some(false), ..ServicePatch::default() };
    let at = shift(t0, 1_000);
    let turned_off = store.update_service(tenant, &charging.slug, off(), at, &ctx).await.unwrap();
    assert_eq!(turned_off, ServiceRecord { charge_tool_errors: false, updated_at: at, ..charging.clone() });
    assert_eq!(store.get_service(&charging.slug).await.unwrap(), Some(turned_off.clone()));
    let again = store.update_service(tenant, &charging.slug, off(), shift(t0, 2_000), &ctx).await.unwrap();
    assert_eq!(again, turned_off, "patching the value it has changes nothing");
    let on = ServicePatch { charge_tool_errors: Some(true), ..ServicePatch::default() };
    store.update_service(tenant, &plain.slug, on, shift(t0, 3_000), &ctx).await.unwrap();
    // A patch of another field leaves the setting as it is.
    let rename = ServicePatch { name: Some("Plain".into()), ..ServicePatch::default() };
    store.update_service(tenant, &plain.slug, rename, shift(t0, 4_000), &ctx).await.unwrap();
    let read = store.get_service(&plain.slug).await.unwrap().unwrap();
    assert_eq!((read.name.as_str(), read.charge_tool_errors), ("Plain", true));
    assert!(!store.get_service(&charging.slug).await.unwrap().unwrap().charge_tool_errors);

    let created = store.list_audit(tenant, &by_action(AuditAction::ServiceCreate)).await.unwrap();
    let logged: BTreeMap<_, _> = created
        .iter()
        .map(|e| (e.target.as_ref().map(|t| t.id.clone()), e.details["charge_tool_errors"].clone()))
        .collect();
    assert_eq!(logged, BTreeMap::from([(Some("charging".into()), json!(true)), (Some("plain".into()), json!(false))]));
    let updates = store.list_audit(tenant, &by_action(AuditAction::ServiceUpdate)).await.unwrap();
    let changed: Vec<_> = updates.iter().map(|e| e.details["changed"].clone()).collect();
    assert_eq!(changed, [json!(["name"]), json!(["charge_tool_errors"]), json!(["charge_tool_errors"])]);
    assert_eq!(updates[1].details["charge_tool_errors"], json!({ "before": false, "after": true }));
    assert_eq!(updates[2].details["charge_tool_errors"], json!({ "before": true, "after": false }));
    assert_eq!(updates[0].details.get("charge_tool_errors"), None, "only a change of the setting is logged");
}

store_tests!(
    created_service_reads_back_the_same_everywhere,
    list_is_by_slug_across_tenants_and_skips_deleted,
    update_patches_each_field_alone,
    patch_that_changes_nothing_writes_nothing,
    delete_hides_the_service_and_frees_its_slug,
    taken_slug_is_a_conflict,
    concurrent_registrations_of_one_slug_have_one_winner,
    concurrent_price_changes_each_see_the_one_before,
    other_tenant_cannot_update_or_delete,
    prices_round_trip_exactly,
    upstreams_round_trip,
    charge_tool_errors_is_stored_patched_and_read_back,
);
