//! The request members each implemented action accepts, as wire-name
//! patterns (`N` = a 1-based list index), generated from the botocore EC2
//! model (`service-2.json`, API version 2016-11-15) by flattening every
//! input member the way botocore's `EC2Serializer` does. A parameter that
//! matches none of its action's patterns is `UnknownParameter`.
//!
//! Regenerate with the script in this crate's `tools/gen_params.py`.

/// Accepted members of `RunInstances`.
pub const RUN_INSTANCES: &[&str] = &[
    "BlockDeviceMapping.N.Ebs.DeleteOnTermination",
    "BlockDeviceMapping.N.Ebs.Iops",
    "BlockDeviceMapping.N.Ebs.SnapshotId",
    "BlockDeviceMapping.N.Ebs.VolumeSize",
    "BlockDeviceMapping.N.Ebs.VolumeType",
    "BlockDeviceMapping.N.Ebs.KmsKeyId",
    "BlockDeviceMapping.N.Ebs.Throughput",
    "BlockDeviceMapping.N.Ebs.OutpostArn",
    "BlockDeviceMapping.N.Ebs.AvailabilityZone",
    "BlockDeviceMapping.N.Ebs.Encrypted",
    "BlockDeviceMapping.N.Ebs.VolumeInitializationRate",
    "BlockDeviceMapping.N.Ebs.AvailabilityZoneId",
    "BlockDeviceMapping.N.Ebs.EbsCardIndex",
    "BlockDeviceMapping.N.NoDevice",
    "BlockDeviceMapping.N.DeviceName",
    "BlockDeviceMapping.N.VirtualName",
    "ImageId",
    "InstanceType",
    "Ipv6AddressCount",
    "Ipv6Address.N.Ipv6Address",
    "Ipv6Address.N.IsPrimaryIpv6",
    "KernelId",
    "KeyName",
    "MaxCount",
    "MinCount",
    "Monitoring.Enabled",
    "Placement.AvailabilityZoneId",
    "Placement.Affinity",
    "Placement.GroupName",
    "Placement.PartitionNumber",
    "Placement.HostId",
    "Placement.Tenancy",
    "Placement.SpreadDomain",
    "Placement.HostResourceGroupArn",
    "Placement.GroupId",
    "Placement.AvailabilityZone",
    "RamdiskId",
    "SecurityGroupId.N",
    "SecurityGroup.N",
    "SubnetId",
    "UserData",
    "ElasticGpuSpecification.N.Type",
    "ElasticInferenceAccelerator.N.Type",
    "ElasticInferenceAccelerator.N.Count",
    "TagSpecification.N.ResourceType",
    "TagSpecification.N.Tag.N.Key",
    "TagSpecification.N.Tag.N.Value",
    "LaunchTemplate.LaunchTemplateId",
    "LaunchTemplate.LaunchTemplateName",
    "LaunchTemplate.Version",
    "InstanceMarketOptions.MarketType",
    "InstanceMarketOptions.SpotOptions.MaxPrice",
    "InstanceMarketOptions.SpotOptions.SpotInstanceType",
    "InstanceMarketOptions.SpotOptions.BlockDurationMinutes",
    "InstanceMarketOptions.SpotOptions.ValidUntil",
    "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
    "CreditSpecification.CpuCredits",
    "CpuOptions.CoreCount",
    "CpuOptions.ThreadsPerCore",
    "CpuOptions.AmdSevSnp",
    "CpuOptions.NestedVirtualization",
    "CapacityReservationSpecification.CapacityReservationPreference",
    "CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId",
    "CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationResourceGroupArn",
    "HibernationOptions.Configured",
    "LicenseSpecification.N.LicenseConfigurationArn",
    "MetadataOptions.HttpTokens",
    "MetadataOptions.HttpPutResponseHopLimit",
    "MetadataOptions.HttpEndpoint",
    "MetadataOptions.HttpProtocolIpv6",
    "MetadataOptions.InstanceMetadataTags",
    "EnclaveOptions.Enabled",
    "PrivateDnsNameOptions.HostnameType",
    "PrivateDnsNameOptions.EnableResourceNameDnsARecord",
    "PrivateDnsNameOptions.EnableResourceNameDnsAAAARecord",
    "MaintenanceOptions.AutoRecovery",
    "DisableApiStop",
    "EnablePrimaryIpv6",
    "NetworkPerformanceOptions.BandwidthWeighting",
    "Operator.Principal",
    "SecondaryInterface.N.DeleteOnTermination",
    "SecondaryInterface.N.DeviceIndex",
    "SecondaryInterface.N.PrivateIpAddress.N.PrivateIpAddress",
    "SecondaryInterface.N.PrivateIpAddressCount",
    "SecondaryInterface.N.SecondarySubnetId",
    "SecondaryInterface.N.InterfaceType",
    "SecondaryInterface.N.NetworkCardIndex",
    "DryRun",
    "DisableApiTermination",
    "InstanceInitiatedShutdownBehavior",
    "PrivateIpAddress",
    "ClientToken",
    "AdditionalInfo",
    "NetworkInterface.N.AssociatePublicIpAddress",
    "NetworkInterface.N.DeleteOnTermination",
    "NetworkInterface.N.Description",
    "NetworkInterface.N.DeviceIndex",
    "NetworkInterface.N.SecurityGroupId.N",
    "NetworkInterface.N.Ipv6AddressCount",
    "NetworkInterface.N.Ipv6Addresses.N.Ipv6Address",
    "NetworkInterface.N.Ipv6Addresses.N.IsPrimaryIpv6",
    "NetworkInterface.N.NetworkInterfaceId",
    "NetworkInterface.N.PrivateIpAddress",
    "NetworkInterface.N.PrivateIpAddresses.N.Primary",
    "NetworkInterface.N.PrivateIpAddresses.N.PrivateIpAddress",
    "NetworkInterface.N.SecondaryPrivateIpAddressCount",
    "NetworkInterface.N.SubnetId",
    "NetworkInterface.N.AssociateCarrierIpAddress",
    "NetworkInterface.N.InterfaceType",
    "NetworkInterface.N.NetworkCardIndex",
    "NetworkInterface.N.Ipv4Prefix.N.Ipv4Prefix",
    "NetworkInterface.N.Ipv4PrefixCount",
    "NetworkInterface.N.Ipv6Prefix.N.Ipv6Prefix",
    "NetworkInterface.N.Ipv6PrefixCount",
    "NetworkInterface.N.PrimaryIpv6",
    "NetworkInterface.N.EnaSrdSpecification.EnaSrdEnabled",
    "NetworkInterface.N.EnaSrdSpecification.EnaSrdUdpSpecification.EnaSrdUdpEnabled",
    "NetworkInterface.N.ConnectionTrackingSpecification.TcpEstablishedTimeout",
    "NetworkInterface.N.ConnectionTrackingSpecification.UdpStreamTimeout",
    "NetworkInterface.N.ConnectionTrackingSpecification.UdpTimeout",
    "NetworkInterface.N.EnaQueueCount",
    "IamInstanceProfile.Arn",
    "IamInstanceProfile.Name",
    "EbsOptimized",
];

/// Accepted members of `DescribeInstances`.
pub const DESCRIBE_INSTANCES: &[&str] = &[
    "InstanceId.N",
    "IncludeManagedResources",
    "DryRun",
    "Filter.N.Name",
    "Filter.N.Value.N",
    "NextToken",
    "MaxResults",
];

/// Accepted members of `ModifyInstanceMetadataOptions`.
pub const MODIFY_INSTANCE_METADATA_OPTIONS: &[&str] = &[
    "InstanceId",
    "HttpTokens",
    "HttpPutResponseHopLimit",
    "HttpEndpoint",
    "DryRun",
    "HttpProtocolIpv6",
    "InstanceMetadataTags",
];

/// Accepted members of `StopInstances`.
pub const STOP_INSTANCES: &[&str] = &["InstanceId.N", "Hibernate", "SkipOsShutdown", "DryRun", "Force"];

/// Accepted members of `StartInstances`.
pub const START_INSTANCES: &[&str] = &["InstanceId.N", "AdditionalInfo", "DryRun"];

/// Accepted members of `TerminateInstances`.
pub const TERMINATE_INSTANCES: &[&str] = &["InstanceId.N", "Force", "SkipOsShutdown", "DryRun"];

/// Accepted members of `RebootInstances`.
pub const REBOOT_INSTANCES: &[&str] = &["InstanceId.N", "DryRun"];

/// Accepted members of `ModifyInstanceAttribute`.
pub const MODIFY_INSTANCE_ATTRIBUTE: &[&str] = &[
    "SourceDestCheck.Value",
    "DisableApiStop.Value",
    "DryRun",
    "InstanceId",
    "Attribute",
    "Value",
    "BlockDeviceMapping.N.DeviceName",
    "BlockDeviceMapping.N.Ebs.VolumeId",
    "BlockDeviceMapping.N.Ebs.DeleteOnTermination",
    "BlockDeviceMapping.N.VirtualName",
    "BlockDeviceMapping.N.NoDevice",
    "DisableApiTermination.Value",
    "InstanceType.Value",
    "Kernel.Value",
    "Ramdisk.Value",
    "UserData.Value",
    "InstanceInitiatedShutdownBehavior.Value",
    "GroupId.N",
    "EbsOptimized.Value",
    "SriovNetSupport.Value",
    "EnaSupport.Value",
];

/// Accepted members of `DescribeInstanceAttribute`.
pub const DESCRIBE_INSTANCE_ATTRIBUTE: &[&str] = &["DryRun", "InstanceId", "Attribute"];

/// Accepted members of `CreateTags`.
pub const CREATE_TAGS: &[&str] = &["DryRun", "ResourceId.N", "Tag.N.Key", "Tag.N.Value"];

/// Accepted members of `DeleteTags`.
pub const DELETE_TAGS: &[&str] = &["DryRun", "ResourceId.N", "Tag.N.Key", "Tag.N.Value"];

/// Accepted members of `DescribeTags`.
pub const DESCRIBE_TAGS: &[&str] =
    &["DryRun", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken"];

/// Accepted members of `ModifyInstanceMetadataDefaults`.
pub const MODIFY_INSTANCE_METADATA_DEFAULTS: &[&str] = &[
    "HttpTokens",
    "HttpPutResponseHopLimit",
    "HttpEndpoint",
    "InstanceMetadataTags",
    "DryRun",
    "HttpTokensEnforced",
];

/// Accepted members of `GetInstanceMetadataDefaults`.
pub const GET_INSTANCE_METADATA_DEFAULTS: &[&str] = &["DryRun"];

/// Accepted members of `RegisterImage`.
pub const REGISTER_IMAGE: &[&str] = &[
    "ImageLocation",
    "BillingProduct.N",
    "BootMode",
    "TpmSupport",
    "UefiData",
    "ImdsSupport",
    "TagSpecification.N.ResourceType",
    "TagSpecification.N.Tag.N.Key",
    "TagSpecification.N.Tag.N.Value",
    "DryRun",
    "Name",
    "Description",
    "Architecture",
    "KernelId",
    "RamdiskId",
    "RootDeviceName",
    "BlockDeviceMapping.N.Ebs.DeleteOnTermination",
    "BlockDeviceMapping.N.Ebs.Iops",
    "BlockDeviceMapping.N.Ebs.SnapshotId",
    "BlockDeviceMapping.N.Ebs.VolumeSize",
    "BlockDeviceMapping.N.Ebs.VolumeType",
    "BlockDeviceMapping.N.Ebs.KmsKeyId",
    "BlockDeviceMapping.N.Ebs.Throughput",
    "BlockDeviceMapping.N.Ebs.OutpostArn",
    "BlockDeviceMapping.N.Ebs.AvailabilityZone",
    "BlockDeviceMapping.N.Ebs.Encrypted",
    "BlockDeviceMapping.N.Ebs.VolumeInitializationRate",
    "BlockDeviceMapping.N.Ebs.AvailabilityZoneId",
    "BlockDeviceMapping.N.Ebs.EbsCardIndex",
    "BlockDeviceMapping.N.NoDevice",
    "BlockDeviceMapping.N.DeviceName",
    "BlockDeviceMapping.N.VirtualName",
    "VirtualizationType",
    "SriovNetSupport",
    "EnaSupport",
];

/// Accepted members of `DescribeImages`.
pub const DESCRIBE_IMAGES: &[&str] = &[
    "ExecutableBy.N",
    "ImageId.N",
    "Owner.N",
    "IncludeDeprecated",
    "IncludeDisabled",
    "MaxResults",
    "NextToken",
    "DryRun",
    "Filter.N.Name",
    "Filter.N.Value.N",
];

/// Accepted members of `DeregisterImage`.
pub const DEREGISTER_IMAGE: &[&str] = &["ImageId", "DeleteAssociatedSnapshots", "DryRun"];

/// Accepted members of `ModifyImageAttribute`.
pub const MODIFY_IMAGE_ATTRIBUTE: &[&str] = &[
    "Attribute",
    "Description.Value",
    "ImageId",
    "LaunchPermission.Add.N.OrganizationArn",
    "LaunchPermission.Add.N.OrganizationalUnitArn",
    "LaunchPermission.Add.N.UserId",
    "LaunchPermission.Add.N.Group",
    "LaunchPermission.Remove.N.OrganizationArn",
    "LaunchPermission.Remove.N.OrganizationalUnitArn",
    "LaunchPermission.Remove.N.UserId",
    "LaunchPermission.Remove.N.Group",
    "OperationType",
    "ProductCode.N",
    "UserGroup.N",
    "UserId.N",
    "Value",
    "OrganizationArn.N",
    "OrganizationalUnitArn.N",
    "ImdsSupport.Value",
    "DryRun",
];

/// Accepted members of `DescribeImageAttribute`.
pub const DESCRIBE_IMAGE_ATTRIBUTE: &[&str] = &["Attribute", "ImageId", "DryRun"];

/// Accepted members of `ImportKeyPair`.
pub const IMPORT_KEY_PAIR: &[&str] = &[
    "TagSpecification.N.ResourceType",
    "TagSpecification.N.Tag.N.Key",
    "TagSpecification.N.Tag.N.Value",
    "DryRun",
    "KeyName",
    "PublicKeyMaterial",
];

/// Accepted members of `DescribeKeyPairs`.
pub const DESCRIBE_KEY_PAIRS: &[&str] =
    &["KeyName.N", "KeyPairId.N", "IncludePublicKey", "DryRun", "Filter.N.Name", "Filter.N.Value.N"];

/// Accepted members of `DeleteKeyPair`.
pub const DELETE_KEY_PAIR: &[&str] = &["KeyName", "KeyPairId", "DryRun"];

/// Accepted members of `DescribeInstanceStatus`.
pub const DESCRIBE_INSTANCE_STATUS: &[&str] = &[
    "InstanceId.N",
    "MaxResults",
    "NextToken",
    "IncludeManagedResources",
    "DryRun",
    "Filter.N.Name",
    "Filter.N.Value.N",
    "IncludeAllInstances",
];

/// Accepted members of `DescribeRegions`.
pub const DESCRIBE_REGIONS: &[&str] =
    &["RegionName.N", "AllRegions", "DryRun", "Filter.N.Name", "Filter.N.Value.N"];

/// Accepted members of `DescribeAvailabilityZones`.
pub const DESCRIBE_AVAILABILITY_ZONES: &[&str] =
    &["ZoneName.N", "ZoneId.N", "AllAvailabilityZones", "DryRun", "Filter.N.Name", "Filter.N.Value.N"];
