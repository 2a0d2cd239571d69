from feast import FeatureService

from feature_repo.features import session_activity, user_history
from propensity.features.definitions import FEATURE_SERVICE_NAME

purchase_propensity_v1 = FeatureService(
    name=FEATURE_SERVICE_NAME,
    features=[user_history, session_activity],
    description="what the purchase-propensity model reads; a new feature set is a new version",
)
