//! Fault-injecting wrappers: every retry and failure path of the pipeline is tested on purpose.
//! A wrapper passes calls through to the wrapped port, except the ones a test scripted to fail.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::allotment::ApiUsage;
use hlsync_core::event::Meeting;
use hlsync_core::id::SfId;
use hlsync_core::member::Member;

use crate::error::SyncError;
use crate::ports::{
    ChangePages, ChangeQuery, Community, Crm, Describe, EmailPreferenceChange, FindBy, IdScan,
    OrgStatus, PushResult, Record, WorkQueue, WriteResult,
};

type MakeError = Box<dyn Fn() -> SyncError + Send + Sync>;

/// Which calls fail: per operation name, a queue of outcomes for the next calls (`None` passes).
#[derive(Default)]
pub struct Script {
    plan: Mutex<HashMap<&'static str, VecDeque<Option<MakeError>>>>,
}

impl Script {
    /// The next call of `op` after `pass` successful ones fails with `error()`.
    pub fn fail(
        &self,
        op: &'static str,
        pass: usize,
        error: impl Fn() -> SyncError + Send + Sync + 'static,
    ) {
        let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        let q = plan.entry(op).or_default();
        q.extend((0..pass).map(|_| None));
        q.push_back(Some(Box::new(error)));
    }

    fn check(&self, op: &'static str) -> Result<(), SyncError> {
        let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        match plan.get_mut(op).and_then(VecDeque::pop_front) {
            Some(Some(make)) => Err(make()),
            _ => Ok(()),
        }
    }
}

pub struct FaultyCrm {
    pub inner: Arc<dyn Crm>,
    pub script: Arc<Script>,
}

#[async_trait]
impl Crm for FaultyCrm {
    async fn org_status(&self) -> Result<OrgStatus, SyncError> {
        self.script.check("org_status")?;
        self.inner.org_status().await
    }
    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError> {
        self.script.check("describe")?;
        self.inner.describe_contact(refresh).await
    }
    async fn changes(&self, query: ChangeQuery) -> Result<Box<dyn ChangePages>, SyncError> {
        self.script.check("changes")?;
        let inner = self.inner.changes(query).await?;
        Ok(Box::new(FaultyPages {
            inner,
            script: Arc::clone(&self.script),
        }))
    }
    async fn read(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<Record>>, SyncError> {
        self.script.check("read")?;
        self.inner.read(object, ids, fields).await
    }
    async fn scan(&self, scan: IdScan) -> Result<Box<dyn ChangePages>, SyncError> {
        self.script.check("scan")?;
        let inner = self.inner.scan(scan).await?;
        Ok(Box::new(FaultyPages {
            inner,
            script: Arc::clone(&self.script),
        }))
    }
    async fn find_by(&self, query: FindBy) -> Result<Vec<Record>, SyncError> {
        self.script.check("find_by")?;
        self.inner.find_by(query).await
    }
    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError> {
        self.script.check("update")?;
        self.inner.update(records).await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
    fn usage(&self) -> Option<ApiUsage> {
        self.inner.usage()
    }
}

struct FaultyPages {
    inner: Box<dyn ChangePages>,
    script: Arc<Script>,
}

#[async_trait]
impl ChangePages for FaultyPages {
    async fn next_page(&mut self) -> Result<Option<Vec<crate::ports::Change>>, SyncError> {
        self.script.check("next_page")?;
        self.inner.next_page().await
    }
}

pub struct FaultyCommunity {
    pub inner: Arc<dyn Community>,
    pub script: Arc<Script>,
}

#[async_trait]
impl Community for FaultyCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        self.script.check("push_members")?;
        self.inner.push_members(members).await
    }
    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError> {
        self.script.check("push_meetings")?;
        self.inner.push_meetings(meetings).await
    }
    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        self.script.check("email_preferences")?;
        self.inner.email_preferences_since(since).await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
}

pub struct FaultyQueue {
    pub inner: Arc<dyn WorkQueue>,
    pub script: Arc<Script>,
}

#[async_trait]
impl WorkQueue for FaultyQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError> {
        self.script.check("send")?;
        self.inner.send(bodies).await
    }
    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: std::time::Duration,
    ) -> Result<Vec<usize>, SyncError> {
        self.script.check("send")?;
        self.inner.send_later(bodies, delay).await
    }
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        self.script.check("dead_letter")?;
        self.inner.dead_letter(body, reason).await
    }
}
