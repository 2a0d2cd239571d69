from feast import Entity, ValueType

from propensity.features.definitions import SESSION_ENTITY_KEY, USER_ENTITY_KEY

user = Entity(name="user", join_keys=[USER_ENTITY_KEY], value_type=ValueType.STRING, description="a shopper")
session = Entity(
    name="session", join_keys=[SESSION_ENTITY_KEY], value_type=ValueType.STRING, description="one storefront visit"
)
