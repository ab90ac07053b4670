//! Repository locations and `REPO::ARCHIVE` (cli.md §3): local paths, `file://`, `ssh://`,
//! scp style, BORG_REPO, placeholders.
