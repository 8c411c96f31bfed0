//! `--subnet ID=ZONE` and `--security-group sg-ID=CIDR[,CIDR...]`: what the API's
//! Subnets and SecurityGroups may name (README "Subnets and security groups").

use super::{flag_error, CliError};
use crate::config::vpc::{parse_security_group, parse_subnet, SecurityGroup};
use getopts::Matches;

pub(super) fn subnets(m: &Matches) -> Result<Vec<(String, String)>, CliError> {
    let mut subnets: Vec<(String, String)> = Vec::new();
    for text in m.opt_strs("subnet") {
        let (id, zone) = parse_subnet(&text).map_err(|why| flag_error("subnet", &text, &why))?;
        if subnets.iter().any(|(known, _)| *known == id) {
            return Err(flag_error("subnet", &text, "subnet id given twice"));
        }
        subnets.push((id, zone));
    }
    Ok(subnets)
}

pub(super) fn security_groups(m: &Matches) -> Result<Vec<SecurityGroup>, CliError> {
    let mut groups: Vec<SecurityGroup> = Vec::new();
    for text in m.opt_strs("security-group") {
        let group =
            parse_security_group(&text).map_err(|why| flag_error("security-group", &text, &why))?;
        if groups.iter().any(|g| g.id == group.id) {
            return Err(flag_error(
                "security-group",
                &text,
                "security group id given twice",
            ));
        }
        groups.push(group);
    }
    Ok(groups)
}
