"""Launch config: Notification simulator, behaviour 'softmax': counts near the rule's likelier,
softmax(-(a - rule(s))^2 / T).

The defaults live in the package (jaxmtf/configs/collect/notifications_softmax.py, one comment per field),
so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs.collect import notifications_softmax


def get_config():
    return notifications_softmax.get_config()
