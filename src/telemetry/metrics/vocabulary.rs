//! The label vocabularies: every label value a series can take, as enums, so that a scan of
//! codes or addresses can add no series.

/// Declares a closed label vocabulary: an enum, its label values in order, and its size.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const COUNT: usize = Self::ALL.len();

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }

            pub(super) fn index(self) -> usize {
                self as usize
            }
        }

        impl Vocabulary for $name {
            fn labels() -> Vec<&'static str> {
                $name::ALL.iter().map(|value| value.label()).collect()
            }
        }
    };
}

vocabulary!(
    /// `http_route`: the route template, never the path.
    HttpRoute {
        Redirect => "/{code}",
        Stats => "/{code}/stats",
        Qr => "/{code}/qr",
        Shorten => "/shorten",
        ShortenBatch => "/shorten/batch",
        Links => "/links",
        OpenApi => "/openapi.json",
        Other => "other",
    }
);
vocabulary!(
    /// `http_request_method`, as OpenTelemetry names it (`_OTHER` for the rest).
    HttpMethod {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Patch => "PATCH",
        Delete => "DELETE",
        Options => "OPTIONS",
        Other => "_OTHER",
    }
);
vocabulary!(
    /// `http_response_status_class`.
    StatusClass {
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
    }
);
vocabulary!(
    /// Where a resolved code's answer came from.
    ResolveOutcome {
        Moka => "moka",
        Negative => "negative",
        Redis => "redis",
        Replica => "replica",
        Primary => "primary",
        Coalesced => "coalesced",
        NotFound => "not_found",
        Unavailable => "unavailable",
        Error => "error",
    }
);
vocabulary!(
    /// The Redis commands the service sends.
    RedisCommand {
        Get => "get",
        Set => "set",
        Ping => "ping",
        Gcra => "gcra",
        Publish => "publish",
    }
);
vocabulary!(
    /// Why a Redis command failed.
    RedisCause {
        Timeout => "timeout",
        Unavailable => "unavailable",
        Error => "error",
    }
);
vocabulary!(
    /// What a failed storage call was doing.
    DbOperation {
        LookupReplica => "lookup_replica",
        LookupPrimary => "lookup_primary",
        Stats => "stats",
        Create => "create",
        Clicks => "clicks",
        Lease => "lease",
        Prune => "prune",
        Keys => "keys",
        KeyLookup => "key_lookup",
        Change => "change",
        Visit => "visit",
        List => "list",
    }
);
vocabulary!(
    /// What the pruner removes (`table`).
    PruneTable {
        IdempotencyKeys => "idempotency_keys",
        StatsBatches => "stats_batches",
        LinkChanges => "link_changes",
        ClickDays => "link_clicks_daily",
        ExpiredLinks => "links",
    }
);
vocabulary!(
    /// How a pruning pass ended (`end`).
    PrunePass {
        Done => "done",
        LeftToAnother => "left_to_another",
        Failed => "failed",
    }
);
vocabulary!(
    /// What a reload of the blocklist file did (`result`).
    ReloadResult {
        Reloaded => "reloaded",
        Refused => "refused",
    }
);
vocabulary!(
    /// Why a storage call failed.
    DbCause {
        PoolTimeout => "pool_timeout",
        Timeout => "timeout",
        Connection => "connection",
        Overloaded => "overloaded",
        Query => "query",
    }
);
vocabulary!(
    /// What became of a batch of creates.
    BatchResult {
        Committed => "committed",
        Unavailable => "unavailable",
        Failed => "failed",
    }
);
vocabulary!(
    /// Who clicked.
    ClickLabel {
        Person => "person",
        Bot => "bot",
    }
);
vocabulary!(
    /// The per-client limits.
    LimitRoute {
        Create => "create",
        Redirect => "redirect",
        Stats => "stats",
    }
);
vocabulary!(
    /// Where the create limit is kept.
    CreateLimitMode {
        Shared => "shared",
        PerInstance => "per_instance",
        Off => "off",
    }
);
vocabulary!(
    /// What became of a lease renewal.
    RenewalResult {
        Renewed => "renewed",
        Failed => "failed",
        Lost => "lost",
    }
);
vocabulary!(
    /// The in-process caches.
    CacheName {
        Links => "links",
        UnknownCodes => "unknown_codes",
    }
);

/// The label values of a vocabulary, in index order.
pub(super) trait Vocabulary {
    fn labels() -> Vec<&'static str>;
}
