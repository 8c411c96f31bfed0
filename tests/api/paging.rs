//! DescribeLoadBalancers paging through boto3 (issue 12 item 3A): PageSize, Marker and
//! NextMarker, the load balancers listed by name.

use crate::client::Boto;
use crate::*;

#[test]
fn describe_load_balancers_pages_by_name_with_next_marker() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    for name in ["lb-e", "lb-b", "lb-d", "lb-a", "lb-c"] {
        create_lb(&mut boto, name, 8081, &["zone-a"]);
    }
    let everyone = ["default", "lb-a", "lb-b", "lb-c", "lb-d", "lb-e"];

    // Default page size (400): one page, no NextMarker.
    let all = boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    assert_eq!(all.len("LoadBalancerDescriptions"), 6);
    assert_eq!(all.opt("NextMarker"), None, "{all}");

    // Pages of 2, following NextMarker; lb-c, named by the second marker, is deleted
    // before the third page is asked for.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = one("PageSize", "2");
        if let Some(m) = &marker {
            params.extend(one("Marker", m));
        }
        let page = boto.ok("DescribeLoadBalancers", &params);
        pages += 1;
        assert!(page.len("LoadBalancerDescriptions") <= 2, "{page}");
        for i in 0..page.len("LoadBalancerDescriptions") {
            seen.push(
                page.get(&format!("LoadBalancerDescriptions.{i}.LoadBalancerName"))
                    .to_string(),
            );
        }
        if pages == 2 {
            boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "lb-c"));
        }
        match page.opt("NextMarker") {
            Some(next) => marker = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, everyone);
    assert_eq!(pages, 3);

    // A page exactly as long as what is left has no NextMarker.
    let page = boto.ok("DescribeLoadBalancers", &one("PageSize", "5"));
    assert_eq!(page.len("LoadBalancerDescriptions"), 5);
    assert_eq!(page.opt("NextMarker"), None, "{page}");

    for size in ["0", "401"] {
        let message = boto.expect_err(
            "DescribeLoadBalancers",
            &one("PageSize", size),
            "ValidationError",
            400,
        );
        assert!(message.contains("pageSize"), "{message}");
    }
    for marker in ["garbage", "lb-a", ""] {
        boto.expect_err(
            "DescribeLoadBalancers",
            &one("Marker", marker),
            "ValidationError",
            400,
        );
    }
}
