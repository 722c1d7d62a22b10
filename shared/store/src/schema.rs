//! The key layout the code relies on. The tables themselves are defined once, in `template.yaml`;
//! the local tooling creates tables from that file and a test checks it against these layouts.

/// The DynamoDB tables, by the names this deployment gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableNames {
    pub sessions: String,
    pub messages: String,
    pub idempotency: String,
    pub memories: String,
    pub limits: String,
    /// The character catalog.
    pub characters: String,
    /// The realtime sockets open on AWS (API Gateway's connection ids).
    pub connections: String,
}

/// Where `TableNames` keeps one table's name.
type TableField = fn(&mut TableNames) -> &mut String;

/// Every table: the environment variable that names it (as `template.yaml`'s `Globals` set it),
/// and its name under a local prefix (`<prefix>sessions`). The one list of the tables: the
/// config, the dev server, the tests and the benchmark read it from here.
const TABLES_BY_ENV: [(&str, &str, TableField); 7] = [
    ("SESSIONS_TABLE", "sessions", |tables| &mut tables.sessions),
    ("MESSAGES_TABLE", "messages", |tables| &mut tables.messages),
    ("IDEMPOTENCY_TABLE", "idempotency", |tables| &mut tables.idempotency),
    ("MEMORIES_TABLE", "memories", |tables| &mut tables.memories),
    ("LIMITS_TABLE", "limits", |tables| &mut tables.limits),
    ("CHARACTERS_TABLE", "characters", |tables| &mut tables.characters),
    ("CONNECTIONS_TABLE", "connections", |tables| &mut tables.connections),
];

impl TableNames {
    /// The names `scripts/dev.sh` and the tests use: `<prefix>sessions`, ...
    pub fn with_prefix(prefix: &str) -> Self {
        let named: Result<Self, std::convert::Infallible> = Self::named_by(|_, local| Ok(format!("{prefix}{local}")));
        named.unwrap_or_else(|never| match never {})
    }

    /// Each table named by `name(environment variable, local name)`; the first failure stops it.
    pub fn named_by<E>(mut name: impl FnMut(&'static str, &'static str) -> Result<String, E>) -> Result<Self, E> {
        let mut tables = Self::default();
        for (env, local, field) in TABLES_BY_ENV {
            *field(&mut tables) = name(env, local)?;
        }
        Ok(tables)
    }

    /// The environment variables that name these tables, with their values.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut tables = self.clone();
        TABLES_BY_ENV.iter().map(|(env, _, field)| (*env, field(&mut tables).clone())).collect()
    }
}

/// A key attribute's DynamoDB type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    S,
    N,
}

/// What an index entry carries besides its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// Every attribute: reads are served from the index alone.
    All,
    /// The keys: the reader fetches the item itself; writes that leave the keys alone cost the
    /// index nothing.
    KeysOnly,
}

impl Projection {
    /// The name `template.yaml` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::KeysOnly => "KEYS_ONLY",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexLayout {
    pub name: &'static str,
    pub partition_key: (&'static str, KeyType),
    pub sort_key: (&'static str, KeyType),
    pub projection: Projection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLayout {
    /// The table's logical id in `template.yaml`.
    pub logical_id: &'static str,
    pub partition_key: (&'static str, KeyType),
    pub sort_key: Option<(&'static str, KeyType)>,
    /// Global secondary indexes.
    pub indexes: &'static [IndexLayout],
    /// Local secondary indexes (their partition key is the table's).
    pub local_indexes: &'static [IndexLayout],
    pub ttl_attribute: Option<&'static str>,
}

pub(crate) mod sessions {
    pub const USER_ID: &str = "user_id";
    pub const SESSION_ID: &str = "session_id";
    pub const BY_ACTIVITY: &str = "by_activity";
    /// `<user_id>#active` or `<user_id>#archived`; absent once the session is deleted.
    pub const LIST_PK: &str = "list_pk";
    pub const ACTIVITY_AT: &str = "activity_at";
    pub const EXPIRES_AT: &str = "expires_at";
}

pub(crate) mod messages {
    pub const SESSION_ID: &str = "session_id";
    pub const SEQ: &str = "seq";
    /// The change feed's index: a session's messages by the revision of their latest change.
    pub const BY_REV: &str = "by_rev";
    pub const REV: &str = "rev";
    /// Set once a message is deleted or hidden: TTL removes it after the retention period.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Streaming replies, for the hourly job to end those whose generator is gone: sparse (its
    /// keys exist only while a reply streams), keys only.
    pub const BY_LEASE: &str = "by_lease";
    /// One of `LEASE_SHARDS` partitions (`0`…), from the session id.
    pub const LEASE_SHARD: &str = "lease_shard";
    /// The reply's user: ending it writes the user's session and meter.
    pub const LEASE_USER: &str = "lease_user";
}

pub(crate) mod memories {
    pub const USER_ID: &str = "user_id";
    /// `m#<scope>#<id>` (memory), `d#<scope>#<hash>` (dedupe marker), `c#<scope>` (count).
    pub const ITEM: &str = "item";
    pub const BY_RANK: &str = "by_rank";
    /// `<scope>#<10 - importance>#<inverted created_at>#<id>`, on memory items only.
    pub const RANK: &str = "rank";
    pub const BY_ID: &str = "by_id";
    pub const MEMORY_ID: &str = "memory_id";
    /// Set on a session's memories of a left epoch (reset, deleting them, deleting the session).
    pub const EXPIRES_AT: &str = "expires_at";
}

pub(crate) mod limits {
    pub const USER_ID: &str = "user_id";
    /// `settings`, `meter`, `r#<class>#<minute>`, `u#<utc day>`.
    pub const ITEM: &str = "item";
    pub const BY_CHORE: &str = "by_chore";
    /// The UTC day on which the hourly job must look at the item; absent once it has.
    pub const CHORE_DAY: &str = "chore_day";
    /// `<user_id>#<item>`.
    pub const CHORE_KEY: &str = "chore_key";
    pub const EXPIRES_AT: &str = "expires_at";
}

pub(crate) mod characters {
    /// A character's id; `#catalog` is the catalog's version item, bumped by every admin write.
    pub const CHARACTER_ID: &str = "character_id";
}

pub(crate) mod connections {
    /// API Gateway's connection id.
    pub const CONNECTION_ID: &str = "connection_id";
    pub const BY_SESSION: &str = "by_session";
    pub const SESSION_ID: &str = "session_id";
    /// API Gateway closes a connection after 2 hours; `$disconnect` is best-effort, so TTL
    /// removes what it missed.
    pub const EXPIRES_AT: &str = "expires_at";
}

pub(crate) mod idempotency {
    /// `<session_id>#<idempotency key>`.
    pub const SCOPE: &str = "scope";
    pub const EXPIRES_AT: &str = "expires_at";
}

pub const SESSIONS: TableLayout = TableLayout {
    logical_id: "SessionsTable",
    partition_key: (sessions::USER_ID, KeyType::S),
    sort_key: Some((sessions::SESSION_ID, KeyType::S)),
    indexes: &[IndexLayout {
        name: sessions::BY_ACTIVITY,
        partition_key: (sessions::LIST_PK, KeyType::S),
        sort_key: (sessions::ACTIVITY_AT, KeyType::S),
        projection: Projection::All,
    }],
    local_indexes: &[],
    ttl_attribute: Some(sessions::EXPIRES_AT),
};

pub const MESSAGES: TableLayout = TableLayout {
    logical_id: "MessagesTable",
    partition_key: (messages::SESSION_ID, KeyType::S),
    sort_key: Some((messages::SEQ, KeyType::N)),
    indexes: &[IndexLayout {
        name: messages::BY_LEASE,
        partition_key: (messages::LEASE_SHARD, KeyType::S),
        sort_key: (messages::LEASE_USER, KeyType::S),
        projection: Projection::KeysOnly,
    }],
    // Local, so the feed reads it strongly consistent; keys only, so a streaming reply's
    // checkpoints (which leave `rev`) cost it nothing; sparse in effect: a message has `rev` only
    // from its first change after its creation (creations are read by seq).
    local_indexes: &[IndexLayout {
        name: messages::BY_REV,
        partition_key: (messages::SESSION_ID, KeyType::S),
        sort_key: (messages::REV, KeyType::N),
        projection: Projection::KeysOnly,
    }],
    ttl_attribute: Some(messages::EXPIRES_AT),
};

pub const IDEMPOTENCY: TableLayout = TableLayout {
    logical_id: "IdempotencyTable",
    partition_key: (idempotency::SCOPE, KeyType::S),
    sort_key: None,
    indexes: &[],
    local_indexes: &[],
    ttl_attribute: Some(idempotency::EXPIRES_AT),
};

pub const MEMORIES: TableLayout = TableLayout {
    logical_id: "MemoriesTable",
    partition_key: (memories::USER_ID, KeyType::S),
    sort_key: Some((memories::ITEM, KeyType::S)),
    indexes: &[],
    local_indexes: &[
        IndexLayout {
            name: memories::BY_RANK,
            partition_key: (memories::USER_ID, KeyType::S),
            sort_key: (memories::RANK, KeyType::S),
            projection: Projection::All,
        },
        IndexLayout {
            name: memories::BY_ID,
            partition_key: (memories::USER_ID, KeyType::S),
            sort_key: (memories::MEMORY_ID, KeyType::S),
            projection: Projection::All,
        },
    ],
    ttl_attribute: Some(memories::EXPIRES_AT),
};

pub const LIMITS: TableLayout = TableLayout {
    logical_id: "LimitsTable",
    partition_key: (limits::USER_ID, KeyType::S),
    sort_key: Some((limits::ITEM, KeyType::S)),
    indexes: &[IndexLayout {
        name: limits::BY_CHORE,
        partition_key: (limits::CHORE_DAY, KeyType::S),
        sort_key: (limits::CHORE_KEY, KeyType::S),
        projection: Projection::KeysOnly,
    }],
    local_indexes: &[],
    ttl_attribute: Some(limits::EXPIRES_AT),
};

pub const CHARACTERS: TableLayout = TableLayout {
    logical_id: "CharactersTable",
    partition_key: (characters::CHARACTER_ID, KeyType::S),
    sort_key: None,
    indexes: &[],
    local_indexes: &[],
    ttl_attribute: None,
};

pub const CONNECTIONS: TableLayout = TableLayout {
    logical_id: "ConnectionsTable",
    partition_key: (connections::CONNECTION_ID, KeyType::S),
    sort_key: None,
    indexes: &[IndexLayout {
        name: connections::BY_SESSION,
        partition_key: (connections::SESSION_ID, KeyType::S),
        sort_key: (connections::CONNECTION_ID, KeyType::S),
        projection: Projection::All,
    }],
    local_indexes: &[],
    ttl_attribute: Some(connections::EXPIRES_AT),
};

/// Every table the code uses.
pub const TABLES: [TableLayout; 7] = [SESSIONS, MESSAGES, IDEMPOTENCY, MEMORIES, LIMITS, CHARACTERS, CONNECTIONS];
