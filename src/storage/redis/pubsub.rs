//! Hearing the changes other instances announce, on a Redis connection of its own (a
//! subscribed connection serves nothing else): sharded pub/sub on a Cluster (the channel lives
//! on one shard, and a failover moves it with the shard), plain pub/sub on one node. fred's
//! types stay here; what leaves is the message's text and whether the subscription holds.

use std::sync::{Arc, Mutex};

use fred::error::Error as FredError;
use fred::prelude::{ClientLike, EventInterface, PubsubInterface, Server};
use fred::types::{ConnectHandle, Message};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::{RedisError, RedisStore, RedisTopology, await_connection_task, builder};

/// What the subscription heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A change announced by an instance.
    Message(String),
    /// The subscription was made again after a connection was (re)made: changes announced
    /// while it was down were not heard.
    Subscribed,
    /// The subscription dropped (a connection closed, or messages were lost): changes are
    /// not heard until the next `Subscribed`.
    Lost(String),
}

/// The subscription to changes.
pub struct ChangeSubscriber {
    client: fred::prelude::Client,
    channel: String,
    sharded: bool,
    messages: Receiver<Message>,
    reconnects: Receiver<Server>,
    errors: Receiver<(FredError, Option<Server>)>,
    connection: Arc<Mutex<Option<ConnectHandle>>>,
}

impl RedisStore {
    /// A subscription to the changes announced through this Redis; it connects (and keeps
    /// reconnecting) by itself. Its events are read with [`ChangeSubscriber::next`].
    pub fn change_subscriber(&self) -> Result<ChangeSubscriber, RedisError> {
        let client = builder(&self.settings)?.build()?;
        // Listening before connecting: the first connection is an event too.
        let (messages, reconnects, errors) = (
            client.message_rx(),
            client.reconnect_rx(),
            client.error_rx(),
        );
        let connection = Arc::new(Mutex::new(Some(client.connect())));
        Ok(ChangeSubscriber {
            client,
            channel: self.changes_channel(),
            sharded: matches!(self.settings.topology, RedisTopology::Cluster(_)),
            messages,
            reconnects,
            errors,
            connection,
        })
    }
}

impl ChangeSubscriber {
    /// Waits for the next event.
    pub async fn next(&mut self) -> ChangeEvent {
        loop {
            tokio::select! {
                message = self.messages.recv() => match message {
                    Ok(message) => match message.value.as_string() {
                        Some(text) => return ChangeEvent::Message(text),
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => {
                        return ChangeEvent::Lost(format!("{missed} announcements were dropped unread"));
                    }
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                },
                reconnected = self.reconnects.recv() => {
                    if let Err(RecvError::Closed) = reconnected {
                        std::future::pending::<()>().await;
                    }
                    return match self.subscribe().await {
                        Ok(()) => ChangeEvent::Subscribed,
                        Err(error) => ChangeEvent::Lost(crate::telemetry::Chain(&error).to_string()),
                    };
                }
                error = self.errors.recv() => match error {
                    Ok((error, _)) => return ChangeEvent::Lost(error.to_string()),
                    Err(RecvError::Lagged(_)) => return ChangeEvent::Lost("connection errors".into()),
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                },
            }
        }
    }

    async fn subscribe(&self) -> Result<(), RedisError> {
        let channel = self.channel.as_str();
        if self.sharded {
            self.client.ssubscribe(channel).await?;
        } else {
            self.client.subscribe(channel).await?;
        }
        Ok(())
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Closes the connection and waits (bounded) for fred's task to end.
    pub async fn quit(&self) {
        if let Err(error) = self.client.quit().await {
            tracing::debug!(%error, "redis subscriber quit failed");
        }
        await_connection_task(&self.connection, "redis subscriber").await;
    }
}
