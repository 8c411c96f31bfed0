//! Tags of load balancers (AddTags, RemoveTags): ELB's key and value rules and its
//! limit of `MAX_TAGS` per load balancer; a call naming several load balancers changes
//! all of them or none.

use super::{LbState, Model, MAX_TAGS};
use crate::control::error::ApiError;

impl Model {
    pub fn add_tags(
        &mut self,
        names: &[String],
        tags: Vec<(String, String)>,
    ) -> Result<(), ApiError> {
        for name in names {
            self.lb(name)?;
        }
        for name in names {
            let lb = self.lb_mut(name)?;
            let mut updated = lb.clone();
            add_tags(&mut updated, tags.clone())?;
            *lb = updated;
        }
        Ok(())
    }

    pub fn remove_tags(&mut self, names: &[String], keys: &[String]) -> Result<(), ApiError> {
        for name in names {
            self.lb(name)?;
        }
        for name in names {
            self.lb_mut(name)?.tags.retain(|(k, _)| !keys.contains(k));
        }
        Ok(())
    }
}

pub(super) fn add_tags(lb: &mut LbState, tags: Vec<(String, String)>) -> Result<(), ApiError> {
    for (i, (key, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(ApiError::duplicate_tag_keys(format!(
                "Tag key '{key}' is given more than once"
            )));
        }
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            return Err(ApiError::validation(format!(
                "Tag key '{key}' must be 1 to 128 characters, not starting with aws:"
            )));
        }
    }
    for (key, value) in tags {
        if value.len() > 256 {
            return Err(ApiError::validation(format!(
                "The value of tag '{key}' is longer than 256 characters"
            )));
        }
        match lb.tags.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => lb.tags.push((key, value)),
        }
    }
    if lb.tags.len() > MAX_TAGS {
        return Err(ApiError::too_many_tags(format!(
            "A load balancer can have at most {MAX_TAGS} tags"
        )));
    }
    Ok(())
}
