//! The migrations are embedded at compile time (`refinery::embed_migrations!`): a file added to
//! or changed in `migrations/` must rebuild the library, which cargo does not know by itself.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
