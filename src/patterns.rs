//! Include/exclude patterns (cli.md §5): fm, sh, re, pp, pf styles and patterns files.
