"""Plain ``nn.Module`` building blocks: bottleneck adapters and prediction heads."""
