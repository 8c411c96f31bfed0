//! API errors with ELB's codes and HTTP statuses, so botocore raises the exception a
//! script written against AWS expects (it maps the `Code` string to the exception).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

impl ApiError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            status,
        }
    }

    pub fn load_balancer_not_found(name: &str) -> ApiError {
        ApiError::new(
            "LoadBalancerNotFound",
            400,
            format!("There is no ACTIVE Load Balancer named '{name}'"),
        )
    }

    pub fn duplicate_load_balancer(name: &str) -> ApiError {
        ApiError::new(
            "DuplicateLoadBalancerName",
            400,
            format!("Load Balancer named '{name}' already exists"),
        )
    }

    pub fn invalid_instance(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidInstance", 400, message)
    }

    pub fn duplicate_listener(message: impl Into<String>) -> ApiError {
        ApiError::new("DuplicateListener", 400, message)
    }

    pub fn listener_not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("ListenerNotFound", 400, message)
    }

    /// ELB answers this one with 409 Conflict.
    pub fn invalid_configuration(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidConfigurationRequest", 409, message)
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationError", 400, message)
    }

    pub fn policy_not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("PolicyNotFound", 400, message)
    }

    pub fn duplicate_policy_name(message: impl Into<String>) -> ApiError {
        ApiError::new("DuplicatePolicyName", 400, message)
    }

    pub fn policy_type_not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("PolicyTypeNotFound", 400, message)
    }

    pub fn too_many_policies(message: impl Into<String>) -> ApiError {
        ApiError::new("TooManyPolicies", 400, message)
    }

    pub fn unsupported_protocol(message: impl Into<String>) -> ApiError {
        ApiError::new("UnsupportedProtocol", 400, message)
    }

    pub fn too_many_load_balancers(limit: usize) -> ApiError {
        ApiError::new(
            "TooManyLoadBalancers",
            400,
            format!("Exceeded the limit of {limit} load balancers"),
        )
    }

    pub fn too_many_tags(message: impl Into<String>) -> ApiError {
        ApiError::new("TooManyTags", 400, message)
    }

    pub fn duplicate_tag_keys(message: impl Into<String>) -> ApiError {
        ApiError::new("DuplicateTagKeys", 400, message)
    }

    /// ELB's message for an id that is not a security group (API reference).
    pub fn invalid_security_group() -> ApiError {
        ApiError::new(
            "InvalidSecurityGroup",
            400,
            "One or more of the specified security groups do not exist.",
        )
    }

    /// ELB's message for a subnet id it does not know (API reference).
    pub fn subnet_not_found() -> ApiError {
        ApiError::new(
            "SubnetNotFound",
            400,
            "One or more of the specified subnets do not exist.",
        )
    }

    pub fn invalid_action(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidAction", 400, message)
    }

    pub fn missing_parameter(name: &str) -> ApiError {
        ApiError::new(
            "MissingParameter",
            400,
            format!("The request must contain the parameter {name}"),
        )
    }

    /// A failure of clb itself (the state file could not be written): the change is not made.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new("InternalFailure", 500, message)
    }

    /// The store (etcd) cannot be reached: nothing was changed; the client may retry.
    pub fn service_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new("ServiceUnavailable", 503, message)
    }

    /// ELB's answer when calls come too fast; here: other nodes kept winning the race
    /// for the same load balancer.
    pub fn throttling(message: impl Into<String>) -> ApiError {
        ApiError::new("Throttling", 400, message)
    }

    /// The `Type` of the error document: the caller's fault or the service's.
    pub fn sender(&self) -> bool {
        self.status < 500
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
