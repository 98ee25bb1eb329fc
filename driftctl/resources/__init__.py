from driftctl.resources.base import Param, ResourceType, all_types, get_type, register

__all__ = ["Param", "ResourceType", "all_types", "get_type", "register"]
