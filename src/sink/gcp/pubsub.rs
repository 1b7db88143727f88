//! `pubsub`: Pub/Sub's `topics.publish` (`POST /v1/projects/P/topics/T:publish`). resmoio's keys
//! (`gcloud_project_id`, `topic`, `create_topic`) keep their meaning; the message data is the
//! document (layout applied), its `occurrence_key` attribute the occurrence key, and with
//! `orderingKey: true` its ordering key the involved object's UID (the subscription must enable
//! message ordering for it to matter). A batch is cut into requests of at most 1000 messages and
//! 10 MB. A publish is all or nothing: a failed request is retried whole (408, 429, 5xx) or
//! failed (other 4xx, e.g. NOT_FOUND for a missing topic).
//!
//! `PUBSUB_EMULATOR_HOST` (`host:port`) sends to the emulator without credentials, as Google's
//! client libraries do, unless `endpoint` is set. `create_topic: true` creates the topic before
//! the first publish (an existing topic is fine; resmoio failed on it).
//!
//! Pub/Sub does not deduplicate publishes: a replay after a crash is a second message with the
//! same `occurrence_key` attribute, which subscribers use to drop it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;

use super::auth::CredentialSource;
use super::{
    Answer, Api, Google, GoogleBatch, GoogleCommon, OCCURRENCE_KEY, json_str, parse_name,
    process_env, whole_request_error,
};
use crate::config::yaml::{Ctx, Fields};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind, keys};
use crate::sink::layout::Encoding;
use crate::sink::partial::Outcomes;
use crate::sink::{Doc, SendError, Sink};

pub const DEFAULT_ENDPOINT: &str = "https://pubsub.googleapis.com";

/// `receivers[].pubsub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PubsubConfig {
    /// None: the key file's project, else the metadata server's.
    pub project: Option<String>,
    pub topic: String,
    pub create_topic: bool,
    pub ordering_key: bool,
    /// The key file, `endpoint`, `layout` and `deDot`.
    pub common: GoogleCommon,
}

impl ReceiverKind for PubsubConfig {
    const NAME: &'static str = "pubsub";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &keys::<8>(
        &[
            "gcloud_project_id",
            "topic",
            "create_topic",
            "orderingKey",
            "credentialsFile",
        ],
        GoogleCommon::KEYS,
    );
    const DEFAULT_MAX_EVENTS: usize = 500;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let project = parse_name(ctx, f, "gcloud_project_id", false);
        let topic = parse_name(ctx, f, "topic", true);
        let create_topic = ctx.bool(f, "create_topic").unwrap_or(false);
        let ordering_key = ctx.bool(f, "orderingKey").unwrap_or(false);
        let common = GoogleCommon::parse(ctx, f, "credentialsFile")?;
        Some(Self {
            project,
            topic: topic?,
            create_topic,
            ordering_key,
            common,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        let kind = Pubsub {
            cfg: self.clone(),
            path: None,
        };
        Ok(Box::new(Google::sink(self.api(env)?, kind)))
    }
}

impl PubsubConfig {
    /// `PUBSUB_EMULATOR_HOST` (`host:port`) is the emulator, without credentials, as for
    /// Google's client libraries, unless `endpoint` is set.
    fn api(&self, env: &BuildEnv) -> Result<Api, Vec<Problem>> {
        let access = &self.common.access;
        match (&access.endpoint, process_env("PUBSUB_EMULATOR_HOST")) {
            (None, Some(host)) if !host.is_empty() => {
                let emulator = format!("http://{host}");
                access.api_at(&emulator, &CredentialSource::None, env)
            }
            _ => access.api(DEFAULT_ENDPOINT, env),
        }
    }
}

/// topics.publish to one topic.
#[derive(Clone)]
pub struct Pubsub {
    cfg: PubsubConfig,
    /// `/v1/projects/P/topics/T`, once the project is known (and the topic created if asked).
    path: Option<String>,
}

#[derive(Deserialize)]
struct PublishAnswer {
    #[serde(rename = "messageIds", default)]
    message_ids: Vec<String>,
}

/// One message: data (base64 of the document), the occurrence key attribute, the ordering key.
pub fn write_message(out: &mut Vec<u8>, doc: &Doc, ordering_key: bool) {
    out.extend_from_slice(b"{\"data\":\"");
    out.extend_from_slice(STANDARD.encode(&doc.body).as_bytes());
    out.extend_from_slice(b"\",\"attributes\":{\"");
    out.extend_from_slice(OCCURRENCE_KEY.as_bytes());
    out.extend_from_slice(b"\":");
    json_str(out, &doc.key);
    out.push(b'}');
    if ordering_key {
        let uid = doc.occ.event.involved_object.uid.as_deref().unwrap_or("");
        if !uid.is_empty() {
            out.extend_from_slice(b",\"orderingKey\":");
            json_str(out, uid);
        }
    }
    out.push(b'}');
}

impl Pubsub {
    async fn topic_path(&mut self, api: &mut Api) -> Result<String, SendError> {
        if let Some(p) = &self.path {
            return Ok(p.clone());
        }
        let project = api
            .tokens()
            .project(self.cfg.project.as_deref())
            .await
            .map_err(|e| e.with_hint("set pubsub.gcloud_project_id"))?;
        let path = format!("/v1/projects/{project}/topics/{}", self.cfg.topic);
        if self.cfg.create_topic {
            let a = api.call(Method::PUT, &path, b"{}".to_vec()).await?;
            if !a.status.is_success() && a.status.as_u16() != 409 {
                return Err(whole_request_error(
                    &format!("creating topic {} at {}", self.cfg.topic, api.base()),
                    &a,
                ));
            }
            if a.status.is_success() {
                tracing::info!(topic = %self.cfg.topic, "pubsub: created the topic");
            }
        }
        self.path = Some(path.clone());
        Ok(path)
    }
}

impl GoogleBatch for Pubsub {
    /// `…/topics/T:publish`.
    type Target = String;

    fn target<'a>(
        &'a mut self,
        api: &'a mut Api,
        _: &'a [Doc],
    ) -> BoxFuture<'a, Result<String, SendError>> {
        async move { Ok(format!("{}:publish", self.topic_path(api).await?)) }.boxed()
    }

    fn encode(&mut self, _: &String, doc: &Doc) -> Result<Vec<u8>, SendError> {
        let mut m = Vec::with_capacity(doc.body.len() * 4 / 3 + 120);
        write_message(&mut m, doc, self.cfg.ordering_key);
        Ok(m)
    }

    fn request(&self, path: &String) -> (String, Vec<u8>, &'static [u8]) {
        (path.clone(), b"{\"messages\":[".to_vec(), b"]}")
    }

    /// A publish is all or nothing: one message ID per message, or the request's error.
    fn read(&self, api: &Api, a: Answer, _: &[Doc], docs: &[usize], outcomes: &mut Outcomes) {
        let what = format!("publish to {} at {}", self.cfg.topic, api.base());
        let result = if !a.is_success() {
            Err(whole_request_error(&what, &a))
        } else {
            match serde_json::from_slice::<PublishAnswer>(&a.body) {
                Ok(p) if p.message_ids.len() == docs.len() => Ok(()),
                Ok(p) => Err(SendError::Transient {
                    reason: format!(
                        "{what}: {} message IDs for {} messages",
                        p.message_ids.len(),
                        docs.len()
                    ),
                    retry_after: None,
                }),
                Err(e) => Err(SendError::Transient {
                    reason: format!("{what}: unexpected answer: {e}"),
                    retry_after: None,
                }),
            }
        };
        if let Err(e) = result {
            outcomes.fail_all(docs.iter().copied(), &e);
        }
    }
}
