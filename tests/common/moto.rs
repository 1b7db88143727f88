//! moto in server mode (PyPI `moto[server]`, pinned) for the AWS receivers' tests, and an
//! independent reader of what reached it: boto3 (which moto installs) in the same venv
//! (pyservers.rs), never our own client.
//!
//! One moto serves every test of a test binary: it starts on first use, on a thread that lives
//! as long as the process, and dies with it (`die_with_parent`). Its address and test
//! credentials are put in this process's environment once (`AWS_ENDPOINT_URL`, …), so the
//! exporter processes the tests start inherit them as a pod's environment would give them.
//! Tests use their own resource names, so they can share it.
//!
//! The reader prints each message or record as a JSON line; after each pass that found nothing
//! new it prints a mark, so [`Reader::messages`] can wait until everything sent before the call
//! has been read.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::pyservers::{PyPackage, Ready, ServerSpec};

const MOTO: PyPackage = PyPackage {
    spec: "moto[server]==5.2.5",
    binary: "moto_server",
};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

struct Shared {
    url: String,
    python: PathBuf,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let binary = MOTO.install();
        let python = binary.with_file_name("python");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("moto".into())
            .spawn(move || {
                let mut spec = ServerSpec::new(
                    binary,
                    &["-H", "127.0.0.1", "-p", "{port}"],
                    Ready::Http("/"),
                );
                spec.die_with_parent = true;
                spec.startup = Duration::from_secs(120);
                match std::panic::catch_unwind(|| spec.start()) {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.url()));
                        // Holds the server (and its parent-death signal) until the process ends.
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => {
                        let why = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let _ = tx.send(Err(why));
                    }
                }
            })
            .expect("a thread for moto");
        let url = rx
            .recv()
            .expect("the moto thread answers")
            .unwrap_or_else(|why| panic!("moto_server did not start: {why}"));
        // SAFETY: this runs once, inside the OnceLock's initialisation, which every test of the
        // binary goes through (`moto()`) before it starts anything: no other thread of ours
        // reads the environment concurrently (Rust's own readers take the environment lock).
        unsafe {
            for (k, v) in test_env(&url) {
                std::env::set_var(k, v);
            }
            for k in [
                "AWS_PROFILE",
                "AWS_SESSION_TOKEN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ROLE_ARN",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            ] {
                std::env::remove_var(k);
            }
        }
        Shared { url, python }
    })
}

fn test_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ENDPOINT_URL", url.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// The shared moto's URL (started, and the environment set, on first use).
pub fn moto() -> &'static str {
    &shared().url
}

const ADMIN: &str = r#"
import json, sys, boto3, botocore.config
url, region = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
c = lambda s: boto3.client(s, config=botocore.config.Config(s3={"addressing_style": "path"}), **kw)
out = {}
for cmd in json.loads(sys.argv[3]):
    op = cmd.pop("op")
    if op == "queue":
        attrs = {"FifoQueue": "true"} if cmd["name"].endswith(".fifo") else {}
        q = c("sqs").create_queue(QueueName=cmd["name"], Attributes=attrs)["QueueUrl"]
        out[cmd["name"]] = q
        out[cmd["name"] + ":arn"] = c("sqs").get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    elif op == "topic":
        attrs = {"FifoTopic": "true"} if cmd["name"].endswith(".fifo") else {}
        out[cmd["name"]] = c("sns").create_topic(Name=cmd["name"], Attributes=attrs)["TopicArn"]
    elif op == "subscribe":
        c("sns").subscribe(TopicArn=cmd["topic"], Protocol="sqs", Endpoint=cmd["queue_arn"],
                           Attributes={"RawMessageDelivery": "true"})
    elif op == "stream":
        c("kinesis").create_stream(StreamName=cmd["name"], ShardCount=cmd.get("shards", 2))
    elif op == "bucket":
        c("s3").create_bucket(Bucket=cmd["name"])
    elif op == "firehose":
        c("firehose").create_delivery_stream(DeliveryStreamName=cmd["name"], ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose", "BucketARN": "arn:aws:s3:::" + cmd["bucket"],
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}})
    elif op == "bus":
        c("events").create_event_bus(Name=cmd["name"])
    elif op == "rule":
        bus = cmd.get("bus", "default")
        c("events").put_rule(Name=cmd["name"], EventBusName=bus, EventPattern=json.dumps({"source": [cmd["source"]]}))
        c("events").put_targets(Rule=cmd["name"], EventBusName=bus, Targets=[{"Id": "1", "Arn": cmd["queue_arn"]}])
    else:
        raise SystemExit("unknown op " + op)
print(json.dumps(out))
"#;

/// Runs boto3 commands against moto (`{"op": "queue", "name": …}`, …; see ADMIN): creates
/// queues, topics, streams, buckets, delivery streams, buses and rules. Returns what they
/// answered: a queue's URL under its name and its ARN under `name:arn`, a topic's ARN.
pub fn admin(commands: serde_json::Value) -> serde_json::Value {
    let s = shared();
    let script = super::pyservers::root().join("aws_admin.py");
    std::fs::write(&script, ADMIN).expect("write the admin script");
    let out = Command::new(&s.python)
        .arg(&script)
        .args([s.url.as_str(), REGION, &commands.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "boto3 {commands}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the admin script prints JSON")
}

const READER: &str = r#"
import base64, json, sys, time, boto3, botocore.config
url, region, mode, name = sys.argv[1:5]
kw = dict(endpoint_url=url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
c = lambda s: boto3.client(s, config=botocore.config.Config(s3={"addressing_style": "path"}), **kw)

def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

mark = 0
def done():
    global mark
    mark += 1
    say({"mark": mark})

def sqs():
    # Read messages are deleted: moto's SendMessageBatch costs time in proportion to the
    # messages a queue holds, and an in-flight message would hold back its FIFO group.
    q, fifo = c("sqs"), name.endswith(".fifo")
    while True:
        r = q.receive_message(QueueUrl=name, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                              VisibilityTimeout=43200,
                              MessageAttributeNames=["All"], AttributeNames=["All"])
        msgs = r.get("Messages", [])
        for m in msgs:
            a = m.get("Attributes", {})
            say({"body": m["Body"],
                 "attrs": {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()},
                 "group": a.get("MessageGroupId"), "dedup": a.get("MessageDeduplicationId")})
        if msgs:
            q.delete_message_batch(QueueUrl=name, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        # Fewer than asked: nothing else was visible (moto is exact, and a standard queue's
        # messages are handed out oldest first).
        if not msgs or (len(msgs) < 10 and not fifo):
            done()
            time.sleep(0.05)

def kinesis():
    k = c("kinesis")
    shards = [s["ShardId"] for s in k.describe_stream(StreamName=name)["StreamDescription"]["Shards"]]
    its = {s: k.get_shard_iterator(StreamName=name, ShardId=s, ShardIteratorType="TRIM_HORIZON")["ShardIterator"] for s in shards}
    while True:
        found = 0
        for s in shards:
            r = k.get_records(ShardIterator=its[s], Limit=1000)
            its[s] = r["NextShardIterator"]
            for rec in r["Records"]:
                found += 1
                say({"body": rec["Data"].decode(), "partition_key": rec["PartitionKey"], "shard": s,
                     "seq": rec["SequenceNumber"]})
        if not found:
            done()
            time.sleep(0.05)

def s3():
    b, seen = c("s3"), set()
    while True:
        keys = []
        for page in b.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in seen]
        for key in sorted(keys):
            seen.add(key)
            data = b.get_object(Bucket=name, Key=key)["Body"].read().decode()
            say({"body": data, "object": key})
        if not keys:
            done()
            time.sleep(0.05)

while True:
    try:
        {"sqs": sqs, "kinesis": kinesis, "s3": s3}[mode]()
    except Exception as e:
        say({"error": repr(e)})
        time.sleep(0.2)
"#;

/// One message or record as the reader saw it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Message {
    pub body: String,
    /// SQS message attributes (String values).
    #[serde(default)]
    pub attrs: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub dedup: Option<String>,
    #[serde(default)]
    pub partition_key: Option<String>,
    #[serde(default)]
    pub shard: Option<String>,
    /// The S3 object a Firehose delivery wrote (many records per object).
    #[serde(default)]
    pub object: Option<String>,
}

impl Message {
    /// The `occurrence_key` attribute.
    pub fn occurrence_key(&self) -> &str {
        self.attrs
            .get("occurrence_key")
            .and_then(|v| v.as_deref())
            .unwrap_or_else(|| panic!("no occurrence_key attribute: {self:?}"))
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Line {
    Mark { mark: u64 },
    Error { error: String },
    Message(Message),
}

/// An independent boto3 reader of a queue (received and deleted), a Kinesis stream (every
/// shard from its start) or an S3 bucket (every object).
pub struct Reader {
    child: Child,
    messages: Arc<Mutex<Vec<Message>>>,
    marks: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Reader {
    /// Reads the queue at `url`.
    pub fn sqs(url: &str) -> Reader {
        Self::spawn("sqs", url)
    }

    pub fn kinesis(stream: &str) -> Reader {
        Self::spawn("kinesis", stream)
    }

    pub fn s3(bucket: &str) -> Reader {
        Self::spawn("s3", bucket)
    }

    fn spawn(mode: &str, name: &str) -> Reader {
        let s = shared();
        let script = super::pyservers::root().join("aws_reader.py");
        std::fs::write(&script, READER).expect("write the reader script");
        let mut child = Command::new(&s.python)
            .arg("-u")
            .arg(&script)
            .args([s.url.as_str(), REGION, mode, name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", s.python.display()));
        let stdout = child.stdout.take().expect("piped");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let marks = Arc::new(AtomicU64::new(0));
        let last_error = Arc::new(Mutex::new(None));
        {
            let (messages, marks, last_error) =
                (messages.clone(), marks.clone(), last_error.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Message(m)) => messages.lock().unwrap().push(m),
                        Ok(Line::Mark { mark }) => marks.store(mark, Ordering::SeqCst),
                        Ok(Line::Error { error }) => *last_error.lock().unwrap() = Some(error),
                        Err(e) => *last_error.lock().unwrap() = Some(format!("{e}: {line}")),
                    }
                }
            });
        }
        Reader {
            child,
            messages,
            marks,
            last_error,
        }
    }

    /// Every message delivered before this call (the reader then completed a pass that found
    /// nothing new), plus any read since.
    pub fn messages(&self) -> Vec<Message> {
        let want = self.marks.load(Ordering::SeqCst) + 2;
        let deadline = Instant::now() + Duration::from_secs(180);
        while self.marks.load(Ordering::SeqCst) < want {
            if Instant::now() > deadline {
                panic!(
                    "the boto3 reader did not catch up within 180 s (last error: {:?})",
                    self.last_error.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.messages.lock().unwrap().clone()
    }

    /// What was read so far, without waiting.
    pub fn so_far(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Polls `keys` (of what was read so far) until every key of `want` is there.
    pub async fn wait_for(
        &self,
        keys: impl Fn(&[Message]) -> Vec<String>,
        want: &[String],
        limit: Duration,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let have: std::collections::BTreeSet<String> =
                keys(&self.so_far()).into_iter().collect();
            let missing = want.iter().filter(|k| !have.contains(*k)).count();
            if missing == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{missing} of {} keys not read after {limit:?} (last reader error: {:?})",
                    want.len(),
                    self.last_error.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
