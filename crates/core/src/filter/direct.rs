//! DirectResponse: the gateway answers with a fixed status, body and headers.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use meshgate_config as config;

use super::{Filter, Flow, RequestCx, header_pair};
use crate::body::Body;

#[derive(Debug)]
pub struct Direct {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Direct {
    pub fn compile(d: &config::DirectResponse) -> Result<Self, String> {
        let status = StatusCode::from_u16(d.status)
            .map_err(|_| format!("status {} is not valid", d.status))?;
        let headers = d
            .headers
            .iter()
            .map(header_pair)
            .collect::<Result<_, String>>()?;
        Ok(Direct {
            status,
            body: Bytes::from(d.body.clone()),
            headers,
        })
    }
}

impl Filter for Direct {
    fn name(&self) -> &'static str {
        "DirectResponse"
    }
    fn on_request(&self, _: &mut http::request::Parts, _: &mut RequestCx<'_>) -> Flow {
        let mut resp = Response::new(Body::full(self.body.clone()));
        *resp.status_mut() = self.status;
        for (n, v) in &self.headers {
            resp.headers_mut().append(n.clone(), v.clone());
        }
        Flow::Respond(resp)
    }
}
