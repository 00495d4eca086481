fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    payhook::cli::main()
}

/// glibc's malloc gives each thread that allocates its own heap arena (up to 8 per core) and
/// hands little of a freed arena back: over a million webhooks that kept the daemon's RSS about
/// 15 MiB above what it uses. Two arenas serve a daemon of a few busy threads as fast. (The
/// same as `MALLOC_ARENA_MAX=2`; called before any thread exists.)
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
