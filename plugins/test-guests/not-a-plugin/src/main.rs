//! TEST ONLY. A plain `wasi:cli/command` component, not a DIBOP plugin: the runtime's tests
//! upload it to check that components of a foreign world are rejected.

fn main() {
    println!("hello from a component that is not a DIBOP plugin");
}
