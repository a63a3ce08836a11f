//! Cursor pagination (`paginationPageRequest`, `paginationPageInfo`) and list responses.

use serde::{Deserialize, Serialize};

/// Information about a paginated response (`paginationPageInfo`). `totalCount` is an int64
/// encoded as a string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_previous_page: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_next_page: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_cursor: Option<String>,
}

/// One page of a list (`v1GetWorkloadsResponse`, `v1GetWorkloadInstancesResponse`,
/// `v1GetLocationsResponse`): `{"pageInfo": …, "results": […]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_info: Option<PageInfo>,
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            page_info: None,
            results: Vec::new(),
        }
    }
}

impl<T> Page<T> {
    /// The cursor of the next page, if the server says there is one.
    pub fn next_cursor(&self) -> Option<&str> {
        let info = self.page_info.as_ref()?;
        if info.has_next_page == Some(true) {
            info.end_cursor.as_deref().filter(|c| !c.is_empty())
        } else {
            None
        }
    }
}

/// What to ask a list call for (the `page_request.*` query parameters). `first` is the page
/// size; `after` the cursor from the previous page's `endCursor`; `filter` the API's
/// SQL-style constraint (e.g. `slug="web-1"`); `sort_by` a field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub first: Option<u32>,
    pub after: Option<String>,
    pub filter: Option<String>,
    pub sort_by: Option<String>,
}

impl PageRequest {
    /// The query string pairs, in the spec's names.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(first) = self.first {
            q.push(("page_request.first", first.to_string()));
        }
        if let Some(after) = &self.after {
            q.push(("page_request.after", after.clone()));
        }
        if let Some(filter) = &self.filter {
            q.push(("page_request.filter", filter.clone()));
        }
        if let Some(sort_by) = &self.sort_by {
            q.push(("page_request.sort_by", sort_by.clone()));
        }
        q
    }
}
