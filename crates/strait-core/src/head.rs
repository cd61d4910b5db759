use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

/// A request's head, as the phases that need no body see it: routing, filters, admission.
/// strait's own type, so the HTTP engine beneath can change without touching them. Moving a
/// request in and out of it copies no header and allocates nothing.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// What the engine attaches (an HTTP/1.1 upgrade, say), handed back with the request.
    pub extensions: Extensions,
}

impl RequestHead {
    /// Splits a request into its head and its body.
    pub fn from_request<B>(request: Request<B>) -> (RequestHead, B) {
        let (parts, body) = request.into_parts();
        let head = RequestHead {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
        };
        (head, body)
    }

    /// A copy of a request's head, leaving the request as it is (extensions are not
    /// copied: they need not be `Clone`).
    pub fn copied_from<B>(request: &Request<B>) -> RequestHead {
        RequestHead {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            extensions: Extensions::new(),
        }
    }

    /// The request again, with `body`.
    pub fn into_request<B>(self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        *request.extensions_mut() = self.extensions;
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_comes_back_whole() {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("http://example.com/a?b=c")
            .version(Version::HTTP_2)
            .header("x-one", "1")
            .body("body")
            .unwrap();
        request.extensions_mut().insert(7u32);
        let (head, body) = RequestHead::from_request(request);
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/a");
        let request = head.into_request(body);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "http://example.com/a?b=c");
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.headers()["x-one"], "1");
        assert_eq!(request.extensions().get::<u32>(), Some(&7));
        assert_eq!(*request.body(), "body");
    }
}
