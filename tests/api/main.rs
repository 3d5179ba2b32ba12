//! End-to-end tests of the DIBOP runtime through real HTTP: each test starts a server on port 0
//! with a fresh database (SQLite, or PostgreSQL when `DIBOP_TEST_DATABASE_URL` is set).

mod alerts;
mod alerts_egress;
mod api_keys;
mod audit;
mod auth;
mod canonical;
mod cli;
mod cluster;
mod connectors;
mod conventions;
mod demo;
mod durability;
mod hardening;
mod helpers;
mod host_auth;
mod identity_hardening;
mod mock;
mod nodes;
mod observability;
mod openapi;
mod orchestrations;
mod plugins;
mod polyglot;
mod process;
mod replay;
mod resilience;
mod retention;
mod sandbox;
mod settings;
mod steps;
mod tenancy;
mod transforms;
mod users;
mod warm;
mod webhooks;
