//! mb-portal: the web portal (maud HTML, JWT cookie; DESIGN.md §7). Not built yet: this crate
//! reserves its place in the workspace. The portal comes with its own issue.
