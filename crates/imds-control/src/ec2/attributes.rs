//! Instance attributes: ModifyInstanceAttribute (user data in both wire
//! forms, instance type; the instance must be stopped) and
//! DescribeInstanceAttribute (every attribute of the model's
//! `InstanceAttributeName`, answered from the record or EC2's defaults).

use super::instances::{DEFAULT_INSTANCE_TYPE, decode_user_data};
use super::{Cx, render, required_instance_id};
use crate::error::ApiError;
use crate::ops::Visibility;
use crate::query::View;
use crate::xml::Xml;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imds_core::InstanceState;

/// `InstanceAttributeName` of the model.
pub const ATTRIBUTES: &[&str] = &[
    "instanceType",
    "kernel",
    "ramdisk",
    "userData",
    "disableApiTermination",
    "instanceInitiatedShutdownBehavior",
    "rootDeviceName",
    "blockDeviceMapping",
    "productCodes",
    "sourceDestCheck",
    "groupSet",
    "ebsOptimized",
    "sriovNetSupport",
    "enaSupport",
    "enclaveOptions",
    "disableApiStop",
];

/// Structure members of ModifyInstanceAttribute and the attribute each sets.
const STRUCTURE_FORMS: &[(&str, &str)] = &[
    ("SourceDestCheck", "sourceDestCheck"),
    ("DisableApiStop", "disableApiStop"),
    ("DisableApiTermination", "disableApiTermination"),
    ("InstanceType", "instanceType"),
    ("Kernel", "kernel"),
    ("Ramdisk", "ramdisk"),
    ("UserData", "userData"),
    ("InstanceInitiatedShutdownBehavior", "instanceInitiatedShutdownBehavior"),
    ("EbsOptimized", "ebsOptimized"),
    ("SriovNetSupport", "sriovNetSupport"),
    ("EnaSupport", "enaSupport"),
];

fn known_attribute(name: &str) -> Result<&'static str, ApiError> {
    ATTRIBUTES.iter().find(|a| **a == name).copied().ok_or_else(|| {
        ApiError::invalid_value(format!(
            "Value ({name}) for parameter attribute is invalid. Unknown attribute."
        ))
    })
}

/// The one attribute a ModifyInstanceAttribute request changes, with its
/// new value as text.
fn requested_change<'a>(p: &View<'a>) -> Result<(&'static str, &'a str), ApiError> {
    let mut forms: Vec<(&'static str, Option<&'a str>)> = Vec::new();
    if let Some(name) = p.str("Attribute") {
        let name = known_attribute(name)?;
        forms.push((name, p.str("Value")));
    } else if p.str("Value").is_some() {
        return Err(ApiError::missing_parameter("Attribute"));
    }
    for (member, name) in STRUCTURE_FORMS {
        if p.has_sub(member) {
            forms.push((name, p.sub(member).str("Value")));
        }
    }
    if !p.list("GroupId").is_empty() {
        forms.push(("groupSet", None));
    }
    if p.has_sub("BlockDeviceMapping") {
        forms.push(("blockDeviceMapping", None));
    }
    match forms.as_slice() {
        [] => Err(ApiError::missing_parameter("Attribute")),
        [(name, value)] => match (*name, value) {
            ("userData" | "instanceType", Some(v)) => Ok((name, v)),
            ("userData" | "instanceType", None) => Err(ApiError::missing_parameter("Value")),
            (other, _) => Err(ApiError::invalid_value(format!(
                "Modifying the attribute '{other}' is not supported by this endpoint; only userData and instanceType can be changed."
            ))),
        },
        _ => Err(ApiError::invalid_combination("Only one attribute can be modified per request.")),
    }
}

/// `ModifyInstanceAttribute`.
pub async fn modify(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let id = required_instance_id(&p)?;
    let (attribute, value) = requested_change(&p)?;
    let user_data = if attribute == "userData" { Some(decode_user_data(value)?) } else { None };
    if attribute == "instanceType" {
        let ok = value.split_once('.').is_some_and(|(a, b)| {
            let part = |s: &str| {
                !s.is_empty() && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            };
            part(a) && part(b)
        });
        if !ok || value.len() > 64 {
            return Err(ApiError::invalid_value(format!("Invalid value '{value}' for InstanceType.")));
        }
    }
    {
        let cx = &*cx;
        cx.ops
            .update::<ApiError, _>(std::slice::from_ref(&id), Visibility::IncludeTerminated, |views| {
                let mut out = Vec::new();
                let mut checks = Vec::new();
                for v in views {
                    if v.record.state != InstanceState::Stopped {
                        return Err(ApiError::incorrect_instance_state(format!(
                            "The instance '{}' is not in the 'stopped' state.",
                            v.record.instance_id
                        )));
                    }
                    let mut r = v.record.clone();
                    let check = cx.check(cx.instance_arn(r.instance_id.as_str())).instance(&v.record);
                    let check = match &user_data {
                        Some(data) => {
                            r.user_data = data.clone();
                            // The value is sensitive: only the name goes into the context.
                            check.with("ec2:Attribute", "UserData")
                        }
                        None => {
                            r.instance_type = value.to_owned();
                            check.attribute("InstanceType", value)
                        }
                    };
                    checks.push(check);
                    out.push(r);
                }
                cx.gate(checks)?;
                Ok(out)
            })
            .await?;
    }
    cx.touched = vec![id.to_string()];
    Ok(Xml::return_true(cx.action, cx.request_id))
}

/// `DescribeInstanceAttribute`.
pub async fn describe(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let id = required_instance_id(&p)?;
    let attribute = known_attribute(p.required_str("Attribute")?)?;
    if attribute == "enaSupport" {
        return Err(ApiError::invalid_value("The enaSupport attribute is not supported at this time."));
    }
    let view = cx.ops.get(&id, Visibility::IncludeTerminated).await?;
    let r = &view.record;
    cx.gate(vec![cx.check(cx.instance_arn(id.as_str())).instance(r)])?;
    let mut x = cx.xml();
    x.leaf("instanceId", &id);
    let value = |x: &mut Xml, element: &str, v: Option<String>| {
        match v {
            Some(v) => x.structure(element, |x| {
                x.leaf("value", v);
            }),
            None => x.empty(element),
        };
    };
    match attribute {
        "instanceType" => value(
            &mut x,
            attribute,
            Some(if r.instance_type.is_empty() {
                DEFAULT_INSTANCE_TYPE.into()
            } else {
                r.instance_type.clone()
            }),
        ),
        "kernel" => value(&mut x, attribute, r.kernel_id.clone()),
        "ramdisk" => value(&mut x, attribute, r.ramdisk_id.clone()),
        "userData" => value(&mut x, attribute, r.user_data.as_ref().map(|d| STANDARD.encode(d))),
        "disableApiTermination" | "ebsOptimized" | "disableApiStop" => {
            value(&mut x, attribute, Some("false".into()))
        }
        "sourceDestCheck" => value(&mut x, attribute, Some("true".into())),
        "instanceInitiatedShutdownBehavior" => value(&mut x, attribute, Some("stop".into())),
        "rootDeviceName" => value(
            &mut x,
            attribute,
            Some(
                r.block_devices
                    .iter()
                    .find(|b| b.name == "root")
                    .map_or_else(|| "/dev/xvda".into(), |b| b.device.clone()),
            ),
        ),
        "sriovNetSupport" => value(&mut x, attribute, None),
        "blockDeviceMapping" => {
            x.empty("blockDeviceMapping");
        }
        "productCodes" => {
            x.list("productCodes", &r.product_codes, |x, c| {
                x.leaf("productCode", c).leaf("type", "marketplace");
            });
        }
        "groupSet" => render::groups(&mut x, r.security_groups()),
        "enclaveOptions" => {
            x.structure("enclaveOptions", |x| {
                x.leaf("enabled", false);
            });
        }
        _ => {
            return Err(ApiError::invalid_value(format!(
                "Value ({attribute}) for parameter attribute is invalid."
            )));
        }
    }
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Params;

    fn change(pairs: &[(&str, &str)]) -> Result<(&'static str, String), ApiError> {
        let p = Params::from_pairs(pairs.iter().copied());
        requested_change(&p.root()).map(|(a, v)| (a, v.to_owned()))
    }

    #[test]
    fn one_attribute_per_request_in_either_form() {
        assert_eq!(change(&[("UserData.Value", "aGk=")]).unwrap(), ("userData", "aGk=".into()));
        assert_eq!(
            change(&[("Attribute", "userData"), ("Value", "aGk=")]).unwrap(),
            ("userData", "aGk=".into())
        );
        assert_eq!(
            change(&[("Attribute", "userData"), ("Value", "aGk="), ("UserData.Value", "aGk=")])
                .unwrap_err()
                .code,
            "InvalidParameterCombination"
        );
        assert_eq!(change(&[("Attribute", "userData")]).unwrap_err().code, "MissingParameter");
        assert_eq!(change(&[("Value", "x")]).unwrap_err().code, "MissingParameter");
        assert_eq!(change(&[]).unwrap_err().code, "MissingParameter");
        assert_eq!(
            change(&[("Attribute", "bogus"), ("Value", "x")]).unwrap_err().code,
            "InvalidParameterValue"
        );
        let e = change(&[("SourceDestCheck.Value", "false")]).unwrap_err();
        assert!(e.message.contains("'sourceDestCheck' is not supported"), "{e:?}");
        assert_eq!(
            change(&[("InstanceType.Value", "t3.small")]).unwrap(),
            ("instanceType", "t3.small".into())
        );
    }
}
