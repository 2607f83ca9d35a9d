"""The `aws` provider: EC2 instances (ec2.py) running Cisco Modeling Labs (cml.py); plugin.py registers it."""
