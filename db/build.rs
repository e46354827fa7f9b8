//! `refinery::embed_migrations!` reads `sql/` at compile time; without this, a migration added
//! to it would not be embedded until something in this crate changed.
fn main() {
    println!("cargo:rerun-if-changed=../sql");
}
